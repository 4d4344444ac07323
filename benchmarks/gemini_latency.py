"""Latency and failures of the gemini engine against the endpoint the settings point to.

    python benchmarks/gemini_latency.py [--calls N] [--parallel P] [CONTENT REFERENCE]

Not run in CI: every call is a real (billed) Gemini request unless PHOTOREMIX_GEMINI_BASE_URL
points at a proxy or a fake. Settings come from the environment as for the service
(PHOTOREMIX_GEMINI_API_KEY, _MODEL, _BASE_URL, _TIMEOUT_S, _RETRIES, _CONCURRENCY).

Each call is one single-output remix through ``GeminiEngine`` (retries included, as the
service would see it). Default pair: the first case of $PHOTOREMIX_PHOTOS_DIR/cases.json
(else ../shared/data/photos), or a synthetic gradient pair when those photos are absent.
Prints one line per call, then a summary: successes, failures by kind, latency
percentiles of the successful calls and the attempts they took; ``--json`` writes the
per-call records too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from photoremix.engines.base import EngineError, RemixRequest
from photoremix.engines.gemini import ContentModerationError, GeminiEngine
from photoremix.imaging import decode_image, output_size_2k
from photoremix.settings import SettingsError, load_settings

REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass
class CallRecord:
    call: int
    ok: bool
    seconds: float  # wall time of the whole remix call (encode, API, retries, fit)
    api_seconds: float | None  # the API part, retries and backoff included
    attempts: int | None
    failure: str | None  # "moderation: IMAGE_SAFETY", or the engine's error message


def default_pair() -> tuple[Path, Path] | None:
    configured = os.environ.get("PHOTOREMIX_PHOTOS_DIR")
    root = Path(configured) if configured else REPOSITORY.parent / "shared" / "data" / "photos"
    try:
        cases = json.loads((root / "cases.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return (root / cases[0]["content"], root / cases[0]["reference"]) if cases else None


def synthetic_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 1600x1200 warm gradient content and a 1200x1200 cool gradient reference."""

    def gradient(width: int, height: int, start: list[int], end: list[int]) -> np.ndarray:
        t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        image = (1 - t) * np.float32(start) + t * np.float32(end)
        return np.broadcast_to(image, (height, width, 3)).round().astype(np.uint8)

    return gradient(1600, 1200, [220, 150, 90], [90, 60, 40]), gradient(
        1200, 1200, [40, 70, 140], [200, 220, 240]
    )


def run_call(engine: GeminiEngine, request: RemixRequest, call: int) -> CallRecord:
    started = time.perf_counter()
    try:
        (output,) = engine.remix(request)
    except ContentModerationError as error:
        failure = f"moderation: {error.reason}"
    except EngineError as error:
        failure = str(error)
    else:
        return CallRecord(
            call,
            True,
            time.perf_counter() - started,
            output.report.timings["call"],
            output.report.applied["attempts"],
            None,
        )
    return CallRecord(call, False, time.perf_counter() - started, None, None, failure)


def summarise(records: list[CallRecord]) -> dict[str, object]:
    successes = [record for record in records if record.ok]
    failures: dict[str, int] = {}
    for record in records:
        if record.failure is not None:
            # Messages carry attempt counts in brackets: group by what precedes them.
            kind = record.failure.split(" (")[0]
            failures[kind] = failures.get(kind, 0) + 1
    summary: dict[str, object] = {
        "calls": len(records),
        "ok": len(successes),
        "failures": failures,
    }
    if successes:
        seconds = sorted(record.seconds for record in successes)
        summary.update(
            p50_s=round(float(np.percentile(seconds, 50)), 2),
            p90_s=round(float(np.percentile(seconds, 90)), 2),
            max_s=round(seconds[-1], 2),
            mean_attempts=round(statistics.fmean(r.attempts or 0 for r in successes), 2),
            retried_calls=sum(1 for r in successes if (r.attempts or 0) > 1),
        )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("content", nargs="?", type=Path, help="content photo")
    parser.add_argument("reference", nargs="?", type=Path, help="style reference")
    parser.add_argument("--calls", type=int, default=5, help="remix calls to make (default 5)")
    parser.add_argument(
        "--parallel", type=int, default=1, help="calls in flight at once (default 1)"
    )
    parser.add_argument("--prompt", default=None, help="user prompt sent with every call")
    parser.add_argument("--json", type=Path, default=None, help="write all records here")
    args = parser.parse_args()
    if (args.content is None) != (args.reference is None):
        parser.error("give both CONTENT and REFERENCE, or neither")
    if args.calls < 1 or args.parallel < 1:
        parser.error("--calls and --parallel must be at least 1")

    try:
        settings = load_settings()
        engine = GeminiEngine(settings)
    except (SettingsError, EngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    pair = (args.content, args.reference) if args.content else default_pair()
    if pair is not None:
        content, reference = decode_image(pair[0]), decode_image(pair[1])
        source = f"{pair[0].name} + {pair[1].name}"
    else:
        content, reference = synthetic_pair()
        source = "synthetic gradients"
    request = RemixRequest(
        content=content,
        reference=reference,
        output_size=output_size_2k(content.shape[1], content.shape[0]),
        prompt=args.prompt,
    )
    print(
        f"model {settings.gemini_model} at {settings.gemini_base_url or 'the Google endpoint'}, "
        f"{args.calls} calls, {args.parallel} at once, pair: {source}"
    )

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(run_call, engine, request, call) for call in range(args.calls)]
        records = []
        for future in futures:
            record = future.result()
            records.append(record)
            outcome = "ok" if record.ok else f"FAILED: {record.failure}"
            print(f"call {record.call:3d}: {record.seconds:7.2f} s, {outcome}")
    engine.close()

    summary = summarise(records)
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"summary": summary, "calls": [asdict(r) for r in records]}, indent=2)
        )
    return 0 if summary["ok"] == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())

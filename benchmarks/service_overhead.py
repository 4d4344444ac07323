"""The remix service's own overhead and throughput at 2K (the targets of issue 3).

    python benchmarks/service_overhead.py [--requests 20] [--clients 8]
        [--throughput-requests 16] [--size 2048] [--json-out FILE]

Starts the real service (``photoremix serve`` on a free loopback port, data in a temporary
folder, classic engine) and measures two things with one fixed pair: skimage's astronaut
upscaled to SIZE x SIZE as the input, skimage's coffee upscaled to SIZE on its long side as
the reference, both JPEG as the service writes them; one ``jpg`` output, ``bytes`` mode.

1. Overhead per synchronous remix. ``--requests`` sequential requests (after warm-up) on
   one keep-alive connection; the wall time runs from sending the pre-serialised body to
   having read the whole response. Subtracted from it, per request:
     R, remix work: every ``reports[0].timings`` entry except ``encode`` and
        ``load_inputs`` (engine stages, and the identity recognition and check);
     X, output encode: ``reports[0].timings.encode`` (JPEG encode + base64);
     D, input decode: ``reports[0].timings.load_inputs`` (base64 + image decode + colour
        conversion of both inputs, as the service timed them; redoing them in this
        process instead, as an earlier version did, misses the service's own time by
        +-5 ms per request, a third of the goal).
   Each printed row says what was subtracted. "overhead excl. codec" (wall - R - X - D) is
   what the service adds around the work a library caller would do too (HTTP, JSON, auth,
   database, thread hand-offs, logging): the goal is a median under 15 ms at 2K.
2. Throughput. The library's: remixes/s of the service's work without the service (decode,
   identity recognition, engine.remix, identity check, encode) in this process, on 1
   thread and on as many threads as the service has workers (default min(4, CPU cores));
   the best counts. The service's: remixes/s with ``--clients`` concurrent HTTP clients
   over ``--throughput-requests`` requests. The goal is the service within 10 % of the
   library. CPU seconds per remix are printed too: they barely move with other load.

Client and service share the machine's cores, and so does anyone else working on it: the
1-minute load average at the start of each phase is printed so that a noisy run shows.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import httpx
import numpy as np
import pydantic_core
from skimage import data as sample_images

from photoremix.api.json_codec import FastJSONResponse
from photoremix.api.schemas import RemixBody
from photoremix.engines import Engine, RemixRequest, get_engine
from photoremix.imaging import decode_image, decode_image_text, encode_image, output_size_2k
from photoremix.settings import Settings

identity: ModuleType | None
try:  # the identity checks the service runs around the engine, once it has them
    from photoremix.services import identity
except ImportError:
    identity = None

REMIX_PATH = "/v1/phota/remix"
SEED = 7  # fixed, so that every request does the same work
WARMUP_REQUESTS = 2  # the first remix in a process compiles numba kernels
IN_PROCESS_REPEATS = 5
STARTUP_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 300.0
OVERHEAD_GOAL_MS = 15.0
THROUGHPUT_GOAL_RATIO = 0.9
ENCODE_TIMING = "encode"
LOAD_TIMING = "load_inputs"


# --- the fixed request --------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """The benchmark pair as the client sends it: base64 JPEG text and the JSON body."""

    content_b64: str
    reference_b64: str
    body: bytes  # the serialised request, built once so the client's JSON is not timed


def make_inputs(size: int) -> Inputs:
    """Astronaut (size x size) as input, coffee (size on the long side) as reference."""
    content = cv2.resize(sample_images.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC)
    coffee = sample_images.coffee()
    reference_size = (size, round(size * coffee.shape[0] / coffee.shape[1]))
    reference = cv2.resize(coffee, reference_size, interpolation=cv2.INTER_CUBIC)
    content_b64, reference_b64 = (
        base64.b64encode(encode_image(image, "jpg")).decode("ascii")
        for image in (content, reference)
    )
    body = {
        "input_image": content_b64,
        "reference_image": reference_b64,
        # One output: the shared engine timings are then counted exactly once.
        "num_output_images": 1,
        "output_format": "jpg",
        "response_mode": "bytes",
        "seed": SEED,
    }
    return Inputs(content_b64, reference_b64, json.dumps(body).encode("ascii"))


# --- the service in a subprocess ------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    base_url: str
    api_key: str
    workers: int
    pid: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_command() -> list[str]:
    """``photoremix serve`` from this interpreter's environment."""
    script = Path(sys.executable).with_name("photoremix")
    if script.is_file():
        return [str(script), "serve"]
    found = shutil.which("photoremix")
    if found:
        return [found, "serve"]
    return [sys.executable, "-c", "from photoremix.cli import main; main()", "serve"]


@contextmanager
def running_service(credit_dollars: float) -> Iterator[Service]:
    """``photoremix serve`` on a free port with a temporary data folder; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="photoremix-bench-") as folder:
        data_dir = Path(folder) / "data"
        log_path = Path(folder) / "serve.log"
        port = _free_port()
        # Everything in the temporary folder: no settings file, no database elsewhere.
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("DATABASE_URL", "PHOTOREMIX_DATABASE_URL", "PHOTOREMIX_SETTINGS_FILE")
        }
        environment["PHOTOREMIX_STARTING_CREDIT"] = f"{credit_dollars:.2f}"
        environment["PHOTOREMIX_ENGINE"] = "classic"  # what the library runs here compare with
        command = [
            *_serve_command(),
            *("--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)),
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment
            )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_ready(process, base_url, log_path)
            # The service derives its worker count from the same settings and environment.
            workers = Settings(data_dir=data_dir).workers
            yield Service(base_url, _printed_key(log_path, data_dir), workers, process.pid)
        finally:
            _stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"photoremix serve exited with status {process.returncode}; its output:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"photoremix serve was not ready after {STARTUP_TIMEOUT_S:g} s")


def _printed_key(log_path: Path, data_dir: Path) -> str:
    """The first API key as ``serve`` printed it (else the copy it keeps in data_dir)."""
    match = re.search(r"^API key: (\S+)$", log_path.read_text(errors="replace"), re.MULTILINE)
    if match:
        return match.group(1)
    return (data_dir / "first-api-key").read_text(encoding="ascii").strip()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- 1. overhead of sequential requests -------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One sequential request, in seconds."""

    wall: float  # client side: body sent -> whole response read
    work: float  # R: every reported timing but "encode" and "load_inputs"
    encode: float  # X: output JPEG encode + base64, as reported
    input_decode: float  # D: base64 + decode of both inputs, as reported ("load_inputs")
    attempts: int  # renders of the output (> 1: identity re-render)


def post_remix(client: httpx.Client, service: Service, body: bytes) -> tuple[float, bytes]:
    """Wall seconds and raw body of one remix; exits on any answer but 200."""
    headers = {"X-API-Key": service.api_key, "Content-Type": "application/json"}
    started = time.perf_counter()
    response = client.post(f"{service.base_url}{REMIX_PATH}", content=body, headers=headers)
    wall = time.perf_counter() - started  # httpx has read the whole body by now
    if response.status_code != 200:
        raise SystemExit(f"remix answered {response.status_code}: {response.text[:500]}")
    return wall, response.content


def reported_timings(response: dict[str, Any]) -> dict[str, float]:
    """The timings of the response's only report (seconds by stage)."""
    reports = response.get("reports") or []
    if len(reports) != 1 or not reports[0].get("timings"):
        raise SystemExit("expected one report with timings: cannot subtract the remix work")
    return {name: float(seconds) for name, seconds in reports[0]["timings"].items()}


def measure_sequential(
    service: Service, inputs: Inputs, requests: int
) -> tuple[list[Sample], dict[str, Any]]:
    """``requests`` remixes one after another (after warm-up); also the last response."""
    samples: list[Sample] = []
    last: dict[str, Any] = {}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for index in range(WARMUP_REQUESTS + requests):
            wall, raw = post_remix(client, service, inputs.body)
            last = json.loads(raw)  # parsed after the clock stopped
            if index < WARMUP_REQUESTS:
                continue
            timings = reported_timings(last)
            encode = timings.pop(ENCODE_TIMING, 0.0)
            load = timings.pop(LOAD_TIMING, 0.0)
            attempts = int(last["reports"][0].get("metrics", {}).get("identity_attempts", 1))
            samples.append(Sample(wall, sum(timings.values()), encode, load, attempts))
    return samples, last


# --- the JSON and base64 work, timed in this process -----------------------------------------


@dataclass(frozen=True)
class JsonSteps:
    """Medians in seconds of the service's JSON and base64 steps, redone in this process."""

    request_json: float  # parsing the request body + RemixBody validation (api.json_codec)
    response_json: float  # FastJSONResponse rendering of the response (the remix route)
    output_base64: float  # base64 of the output JPEG (inside the reported "encode")


def _median_seconds(work: Callable[[], object], repeats: int = IN_PROCESS_REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure_json_steps(inputs: Inputs, response: dict[str, Any]) -> JsonSteps:
    output_jpeg = [base64.b64decode(image) for image in response["images"]]
    return JsonSteps(
        request_json=_median_seconds(
            lambda: RemixBody.model_validate(pydantic_core.from_json(inputs.body))
        ),
        response_json=_median_seconds(lambda: FastJSONResponse(response)),
        output_base64=_median_seconds(lambda: [base64.b64encode(data) for data in output_jpeg]),
    )


# --- 2. throughput ---------------------------------------------------------------------------


def library_pipeline(engine: Engine, inputs: Inputs) -> bytes:
    """One remix as ``RemixService`` does it (no profiles, no re-render), without the service:
    decode -> identity recognition -> engine.remix -> identity check -> JPEG encode.
    """
    content = decode_image(decode_image_text(inputs.content_b64))
    reference = decode_image(decode_image_text(inputs.reference_b64))
    who = identity.recognise_input(content, []) if identity is not None else None
    request = RemixRequest(
        content=content,
        reference=reference,
        output_size=output_size_2k(content.shape[1], content.shape[0]),
        faces=None if who is None else tuple(observation.face for observation in who.faces),
        num_outputs=1,
        seed=SEED,
    )
    image = engine.remix(request)[0].image
    if identity is not None and who is not None:
        identity.check_output(image, who, content.shape, [])
    return encode_image(image, "jpg")


@dataclass(frozen=True)
class ThroughputRun:
    remixes_per_s: float  # wall clock: the goal's measure, sensitive to other load
    # CPU seconds of the process doing the work per remix (library: this process; service:
    # the server process, clients excluded). Barely moved by other load; None without /proc.
    cpu_s_per_remix: float | None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def library_throughput(engine: Engine, inputs: Inputs, threads: int, remixes: int) -> ThroughputRun:
    """``library_pipeline`` on ``threads`` threads (warm the engine up first)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        cpu_started, started = time.process_time(), time.perf_counter()
        list(pool.map(lambda _: library_pipeline(engine, inputs), range(remixes)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return ThroughputRun(remixes / wall, cpu / remixes)


def service_throughput(
    service: Service, inputs: Inputs, clients: int, remixes: int
) -> tuple[ThroughputRun, int]:
    """``clients`` concurrent clients sharing ``remixes`` requests.

    Returns the run and how many 503s (pool full) were retried after a short pause.
    """
    remaining = iter(range(remixes))
    lock = threading.Lock()
    refused = 0

    def client_loop() -> None:
        nonlocal refused
        headers = {"X-API-Key": service.api_key, "Content-Type": "application/json"}
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                while True:
                    response = client.post(
                        f"{service.base_url}{REMIX_PATH}", content=inputs.body, headers=headers
                    )
                    if response.status_code != 503:
                        break
                    with lock:
                        refused += 1
                    time.sleep(0.2)
                if response.status_code != 200 or len(response.json()["images"]) != 1:
                    raise SystemExit(
                        f"remix answered {response.status_code}: {response.text[:500]}"
                    )

    cpu_started = process_cpu_seconds(service.pid)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        started = time.perf_counter()
        for future in [pool.submit(client_loop) for _ in range(clients)]:
            future.result()
        wall = time.perf_counter() - started
    cpu_ended = process_cpu_seconds(service.pid)
    cpu = None if cpu_started is None or cpu_ended is None else cpu_ended - cpu_started
    return ThroughputRun(remixes / wall, None if cpu is None else cpu / remixes), refused


# --- summary and output ----------------------------------------------------------------------

# Each per-request series: its name in the table and JSON, and what it is.
OVERHEAD_ROWS = {
    "wall": "client wall time: body sent -> whole response read",
    "R remix work": "reported timings but encode and load_inputs: {work}",
    "X output encode": "reported encode: JPEG encode + base64 of the output",
    "D input decode": "reported load_inputs: base64 + image decode of both inputs",
    "overhead incl. codec": "wall - R",
    "overhead (reports)": "wall - R - X: every timing the service reports subtracted",
    "overhead excl. codec": "wall - R - X - D: the service around the library's work",
    "rest": "overhead excl. codec - request JSON - response JSON: HTTP, auth, DB, threads, logs",
}
OVERHEAD_GOAL_ROW = "overhead excl. codec"


def _ms_stats(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000.0
    return {
        "median_ms": round(float(np.median(values)), 2),
        "p90_ms": round(float(np.percentile(values, 90)), 2),
    }


def summarise_overhead(samples: list[Sample], steps: JsonSteps) -> dict[str, dict[str, float]]:
    """Median and p90 in ms of every series in OVERHEAD_ROWS."""
    json_work = steps.request_json + steps.response_json
    series = {
        "wall": [s.wall for s in samples],
        "R remix work": [s.work for s in samples],
        "X output encode": [s.encode for s in samples],
        "D input decode": [s.input_decode for s in samples],
        "overhead incl. codec": [s.wall - s.work for s in samples],
        "overhead (reports)": [s.wall - s.work - s.encode for s in samples],
        "overhead excl. codec": [s.wall - s.work - s.encode - s.input_decode for s in samples],
        "rest": [s.wall - s.work - s.encode - s.input_decode - json_work for s in samples],
    }
    return {name: _ms_stats(series[name]) for name in OVERHEAD_ROWS}


def print_report(result: dict[str, Any]) -> None:
    config = result["config"]
    width, height = config["output_size"]
    print(
        f"\nphotoremix service, input {config['size']}x{config['size']} -> {width}x{height} jpg, "
        f"bytes mode; {config['cpu_count']} CPU cores, {config['service_workers']} service "
        f"workers; 1-min load average at each phase: {config['load_by_phase']}"
    )
    print(
        f"\n1. overhead per sync remix, {config['requests']} sequential requests "
        f"(after {WARMUP_REQUESTS} warm-up), ms"
    )
    print(f"  {'':<22}{'median':>8}{'p90':>8}  what")
    work = " + ".join(config["work_timings"])
    for name, stats in result["overhead"].items():
        what = OVERHEAD_ROWS[name].format(work=work)
        print(f"  {name:<22}{stats['median_ms']:>8.1f}{stats['p90_ms']:>8.1f}  {what}")
    steps = result["json_steps"]
    samples = result["samples"]
    print(
        f"  in-process medians, ms: output base64 "
        f"{steps['output_base64'] * 1000:.1f} (in X); request JSON (parse + RemixBody) "
        f"{steps['request_json'] * 1000:.1f}; response JSON (JSONResponse) "
        f"{steps['response_json'] * 1000:.1f}"
    )
    rerendered = sum(sample["attempts"] > 1 for sample in samples)
    if rerendered:
        print(
            f"  {rerendered} of {len(samples)} requests re-rendered for identity: their report "
            "may lack the first render's timings, which then count as overhead"
        )

    throughput = result["throughput"]
    print(f"\n2. throughput, {config['throughput_requests']} remixes per run")
    print(f"  {'':<30}{'remixes/s':>10}{'CPU s/remix':>13}")
    rows = [
        (f"library, {threads} thread(s)", run)
        for threads, run in throughput["library_by_threads"].items()
    ]
    rows.append((f"service, {config['clients']} clients", throughput["service"]))
    for name, run in rows:
        cpu = run["cpu_s_per_remix"]
        cpu_text = "n/a" if cpu is None else f"{cpu:.3f}"
        print(f"  {name:<30}{run['remixes_per_s']:>10.3f}{cpu_text:>13}")
    print(
        f"  library: {config['library_pipeline']} in this process; service: HTTP, bytes mode, "
        f"CPU of the server process only; 503 retries: {throughput['refused']}"
    )

    own = result["overhead"][OVERHEAD_GOAL_ROW]["median_ms"]
    incl = result["overhead"]["overhead incl. codec"]["median_ms"]
    verdict = "met" if own < OVERHEAD_GOAL_MS else "NOT met"
    print(
        f"\ngoal: median overhead < {OVERHEAD_GOAL_MS:g} ms: {verdict}: {own:.1f} ms with "
        f"R, X and D subtracted ({incl:.1f} ms with only R subtracted)"
    )
    ratio = throughput["ratio"]
    verdict = "met" if ratio >= THROUGHPUT_GOAL_RATIO else "NOT met"
    print(
        f"goal: service throughput within {1 - THROUGHPUT_GOAL_RATIO:.0%} of the library's: "
        f"{verdict}: remixes/s, service / best library run = {ratio:.3f}"
    )
    if throughput["cpu_ratio"] is not None:
        print(
            "  CPU s/remix, best library run / service = "
            f"{throughput['cpu_ratio']:.3f}: the ratio to expect on a quiet machine"
        )


def _progress(phase: str, loads: dict[str, float]) -> None:
    """Say what runs now, and note the 1-minute load average as it starts."""
    loads[phase] = round(os.getloadavg()[0], 2)
    print(f"{phase} (load {loads[phase]}) ...", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="sequential requests measured")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--throughput-requests", type=int, default=16, help="remixes in each throughput run"
    )
    parser.add_argument("--size", type=int, default=2048, help="input image side in pixels")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if min(args.requests, args.clients, args.throughput_requests) < 1 or args.size < 64:
        parser.error("--requests, --clients and --throughput-requests must be >= 1, --size >= 64")

    loads: dict[str, float] = {}
    _progress("start", loads)
    inputs = make_inputs(args.size)
    total_requests = WARMUP_REQUESTS + args.requests + args.throughput_requests
    credit = 0.15 * total_requests + 10.0  # the worst case reserved per output, with margin
    engine = get_engine("classic")
    with running_service(credit) as service:
        _progress("sequential", loads)
        samples, response = measure_sequential(service, inputs, args.requests)
        steps = measure_json_steps(inputs, response)
        _progress("library", loads)
        library_pipeline(engine, inputs)  # warm-up: numba compiles on the first remix
        library_runs = {
            threads: library_throughput(engine, inputs, threads, args.throughput_requests)
            for threads in sorted({1, service.workers})
        }
        _progress("service", loads)
        service_run, refused = service_throughput(
            service, inputs, args.clients, args.throughput_requests
        )
    _progress("end", loads)

    best_library = max(library_runs.values(), key=lambda run: run.remixes_per_s)
    cpu_ratio = (
        round(best_library.cpu_s_per_remix / service_run.cpu_s_per_remix, 4)
        if best_library.cpu_s_per_remix and service_run.cpu_s_per_remix
        else None
    )
    work_timings = [
        name for name in reported_timings(response) if name not in (ENCODE_TIMING, LOAD_TIMING)
    ]
    result = {
        "config": {
            "size": args.size,
            "output_size": list(output_size_2k(args.size, args.size)),
            "requests": args.requests,
            "warmup_requests": WARMUP_REQUESTS,
            "clients": args.clients,
            "throughput_requests": args.throughput_requests,
            "service_workers": service.workers,
            "cpu_count": os.cpu_count(),
            "load_by_phase": loads,
            "work_timings": work_timings,
            "library_pipeline": (
                "decode -> recognise_input -> engine.remix -> check_output -> encode"
                if identity is not None
                else "decode -> engine.remix -> encode"
            ),
        },
        "definitions": {
            name: what.format(work=" + ".join(work_timings)) for name, what in OVERHEAD_ROWS.items()
        },
        "overhead": summarise_overhead(samples, steps),
        "json_steps": asdict(steps),
        "samples": [asdict(sample) for sample in samples],
        "throughput": {
            "library_by_threads": {threads: asdict(run) for threads, run in library_runs.items()},
            "service": asdict(service_run),
            "refused": refused,
            "ratio": round(service_run.remixes_per_s / best_library.remixes_per_s, 4),
            "cpu_ratio": cpu_ratio,
        },
    }
    print_report(result)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

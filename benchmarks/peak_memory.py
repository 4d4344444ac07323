"""Peak memory of one 2K remix with the classic engine, measured in a fresh process.

    python benchmarks/peak_memory.py [CONTENT REFERENCE]

Default pair: the first portrait case of $PHOTOREMIX_PHOTOS_DIR/cases.json (else
../shared/data/photos), or a synthetic 12 MP photo when those photos are absent.

The child imports photoremix, warms the engine up on a tiny pair (numba compiles then, and
the compiler's memory is not the remix's), decodes the pair, then resets its peak-RSS mark
(Linux /proc/self/clear_refs) so that ``ru_maxrss`` of the finished child is the peak of
the remix itself. If the reset is refused, the peak covers the whole child and the line
"peak reset: no" says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from synthetic import synthetic_pair

REPOSITORY = Path(__file__).resolve().parents[1]
PORTRAIT_TAG_PREFIX = "portrait"


def _current_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5 = reset the peak-RSS mark
    except OSError:
        return False
    return True


def child(content_path: str | None, reference_path: str | None) -> None:
    """Runs in the fresh process; prints one JSON line of measurements."""
    from photoremix.engines import RemixRequest, get_engine
    from photoremix.imaging import decode_image, output_size_2k

    after_imports = _current_rss_kib()
    engine = get_engine("classic")
    tiny = np.random.default_rng(1).integers(0, 256, size=(2, 64, 96, 3), dtype=np.uint8)
    engine.remix(RemixRequest(content=tiny[0], reference=tiny[1], output_size=(96, 64)))
    if content_path and reference_path:
        content, reference = decode_image(Path(content_path)), decode_image(Path(reference_path))
    else:
        content, reference = synthetic_pair((4000, 3000), (1600, 1067))  # a phone photo's size
    output_size = output_size_2k(content.shape[1], content.shape[0])
    before_remix = _current_rss_kib()
    reset = _reset_peak_rss()
    start = time.perf_counter()
    engine.remix(RemixRequest(content=content, reference=reference, output_size=output_size))
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "content": f"{content.shape[1]}x{content.shape[0]}",
                "reference": f"{reference.shape[1]}x{reference.shape[0]}",
                "output": f"{output_size[0]}x{output_size[1]}",
                "after_imports_kib": after_imports,
                "before_remix_kib": before_remix,
                "peak_reset": reset,
                "seconds": seconds,
            }
        )
    )


def default_pair() -> tuple[str, str] | None:
    configured = os.environ.get("PHOTOREMIX_PHOTOS_DIR")
    root = Path(configured) if configured else REPOSITORY.parent / "shared" / "data" / "photos"
    try:
        cases = json.loads((root / "cases.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for case in cases:
        if str(case.get("tag", "")).startswith(PORTRAIT_TAG_PREFIX):
            return str(root / case["content"]), str(root / case["reference"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", nargs="*", metavar="IMAGE", help="CONTENT REFERENCE")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if len(arguments.pair) not in (0, 2):
        parser.error("give both CONTENT and REFERENCE, or neither")
    pair = tuple(arguments.pair) or default_pair()
    missing = [path for path in pair or () if not Path(path).is_file()]
    if missing:
        parser.error(f"no such image: {', '.join(missing)}")
    if arguments.child:
        child(*(pair or (None, None)))
        return

    command = [sys.executable, __file__, "--child", *(pair or ())]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        sys.exit(f"the remix process failed:\n{finished.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    mib = 1024
    before = result["before_remix_kib"]
    print(f"pair: {' + '.join(pair) if pair else 'synthetic'}")
    print(f"content {result['content']}, reference {result['reference']} -> {result['output']}")
    print(f"RSS after imports:                {result['after_imports_kib'] / mib:8.1f} MiB")
    print(f"RSS before remix (warm, decoded): {before / mib:8.1f} MiB")
    print(f"peak RSS of the child:            {peak / mib:8.1f} MiB")
    print(f"peak mark reset before remix:     {'yes' if result['peak_reset'] else 'no':>8}")
    print(f"remix's own peak (peak - before): {(peak - before) / mib:8.1f} MiB")
    print(f"remix time:                       {result['seconds']:8.2f} s")


if __name__ == "__main__":
    main()

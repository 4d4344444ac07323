"""Seconds per variation and peak GPU memory of the qwen engine (Qwen-Image-Edit).

    python benchmarks/qwen_speed.py --model-dir /models/Qwen-Image-Edit-2511 \\
        [--steps 40] [--cfg 4.0] [--variations 4] [--lora FILE ...] [--device cuda] \\
        [--cpu-offload] [--content PHOTO --reference PHOTO] [--json]

Needs the qwen extra, the weights, and (for meaningful numbers) a CUDA GPU; not run in CI.
Steps: load the engine (timed), render one warm-up variation (CUDA kernels and allocator
warm up; timed apart), reset the GPU peak-memory counters, then render ``--variations``
variations in one remix call, as the service would. Reported: load and warm-up seconds,
seconds per variation (median, min, max; the whole ``remix`` wall time divided as well),
seconds per denoising step, peak GPU memory allocated and reserved by torch during the
measured variations, and the process's peak RSS.

The default pair is synthetic (a 4:3 content, so the working size is 1184x880, and a
square reference): speed depends on sizes and steps, not on what the photos show. Pass
``--content``/``--reference`` to time a real pair (e.g. from $PHOTOREMIX_PHOTOS_DIR).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from photoremix.engines import EngineError, RemixRequest
from photoremix.engines.qwen import WORKING_AREA, QwenEngine
from photoremix.imaging import decode_image, output_size_2k
from photoremix.settings import Settings
from synthetic import synthetic_pair


def measure(
    settings: Settings,
    content: np.ndarray,
    reference: np.ndarray,
    variations: int,
    working_area: int = WORKING_AREA,
) -> dict[str, Any]:
    """Load the engine, warm it up and time ``variations`` renders; the result as a dict."""
    import torch

    started = time.perf_counter()
    engine = QwenEngine(settings, working_area=working_area)
    load_s = time.perf_counter() - started
    on_cuda = engine.device.startswith("cuda")
    output_size = output_size_2k(content.shape[1], content.shape[0])

    def request(seed: int, count: int) -> RemixRequest:
        # faces=(): face detection is the service's cost, not the model's.
        return RemixRequest(
            content=content,
            reference=reference,
            output_size=output_size,
            faces=(),
            num_outputs=count,
            seed=seed,
        )

    started = time.perf_counter()
    engine.remix(request(seed=0, count=1))
    warmup_s = time.perf_counter() - started

    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    outputs = engine.remix(request(seed=1, count=variations))
    if on_cuda:
        torch.cuda.synchronize()
    wall_s = time.perf_counter() - started
    generate_s = [output.report.timings["generate"] for output in outputs]
    per_variation = [
        output.report.timings["generate"] + output.report.timings["resize"] for output in outputs
    ]
    gib = 1024**3
    return {
        "device": torch.cuda.get_device_name(engine.device) if on_cuda else "cpu",
        "dtype": str(engine.dtype).removeprefix("torch."),
        "cpu_offload": engine.cpu_offload,
        "model_dir": str(engine.model_dir),
        "loras": [str(path) for path in engine.loras],
        "steps": engine.steps,
        "true_cfg_scale": engine.true_cfg_scale,
        "input_sizes": [list(content.shape[1::-1]), list(reference.shape[1::-1])],
        "working_size": outputs[0].report.applied["working_size"],
        "output_size": list(output_size),
        "variations": variations,
        "load_s": round(load_s, 2),
        "warmup_s": round(warmup_s, 2),
        "s_per_variation_median": round(statistics.median(per_variation), 3),
        "s_per_variation_min": round(min(per_variation), 3),
        "s_per_variation_max": round(max(per_variation), 3),
        "s_per_variation_wall": round(wall_s / variations, 3),
        "s_per_step": round(statistics.median(generate_s) / engine.steps, 4),
        "peak_gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / gib, 2)
        if on_cuda
        else None,
        "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / gib, 2)
        if on_cuda
        else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="diffusers weights folder")
    parser.add_argument("--steps", type=int, default=40, help="denoising steps (default 40)")
    parser.add_argument("--cfg", type=float, default=4.0, help="true_cfg_scale (default 4)")
    parser.add_argument("--variations", type=int, default=4, help="variations to time")
    parser.add_argument("--lora", action="append", default=[], help="LoRA file (repeatable)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--cpu-offload", action="store_true", help="offload idle parts to CPU")
    parser.add_argument("--content", type=Path, help="content photo (default: synthetic)")
    parser.add_argument("--reference", type=Path, help="reference photo (default: synthetic)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if (args.content is None) != (args.reference is None):
        parser.error("give both --content and --reference, or neither")
    if args.variations < 1:
        parser.error("--variations must be at least 1")

    if args.content is not None:
        content, reference = decode_image(args.content), decode_image(args.reference)
    else:
        content, reference = synthetic_pair((1600, 1200), (1024, 1024))  # 4:3, square
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(
                data_dir=Path(data_dir),
                qwen_model_dir=args.model_dir,
                qwen_steps=args.steps,
                qwen_true_cfg_scale=args.cfg,
                qwen_lora_paths=args.lora,
                qwen_device=args.device,
                qwen_cpu_offload=args.cpu_offload,
            )
            result = measure(settings, content, reference, args.variations)
    except (EngineError, ValidationError) as error:
        print(f"qwen_speed: {error}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(key) for key in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

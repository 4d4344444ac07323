"""A synthetic content/reference pair for benchmarks run without the evaluation photos."""

from __future__ import annotations

import numpy as np


def synthetic_pair(
    content_size: tuple[int, int], reference_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(content, reference), (H, W, 3) uint8 RGB at the given (width, height): a warm and a
    cool diagonal gradient with Gaussian noise (std 10), the same pixels on every call."""
    rng = np.random.default_rng(0)

    def image(size: tuple[int, int], colours: list[list[float]]) -> np.ndarray:
        width, height = size
        x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        base = 255 * (x * np.float32(colours[0]) + y * np.float32(colours[1]))
        noise = rng.normal(0, 10, size=(height, width, 1)).astype(np.float32)
        return np.clip(base + noise, 0, 255).astype(np.uint8)

    return (
        image(content_size, [[0.7, 0.5, 0.3], [0.2, 0.3, 0.5]]),
        image(reference_size, [[0.2, 0.4, 0.8], [0.6, 0.2, 0.1]]),
    )

"""The project's quality yardstick: style, texture, structure and identity of one remix.

Every function takes images in the package convention: ``np.ndarray`` of shape (H, W, 3),
dtype uint8, sRGB-encoded RGB. Colour statistics are computed in CIELab from OpenCV's
float conversion (RGB in [0, 1] -> L in [0, 100], a and b roughly in [-127, 127]).

- style: sliced Wasserstein distance (SW2) between Lab pixel distributions, output vs
  reference, divided by the same distance content vs reference. 0 = the reference's colours
  exactly, 1 = nothing changed, > 1 = further away than the untouched content.
- texture: the same ratio for 40 multi-scale gradient statistics of L (L1 distance).
- structure: mean SSIM structure term between content L and output L; 1 = same local
  structure, lower = edges moved, blurred or invented.
- identity: dlib embedding distance of each content face to the same box in the output
  (> 0.6 is "a different person"), and whether a face is still detected there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import cv2
import numpy as np

from photoremix.vision.faces import (
    DETECTION_LONG_SIDE,
    Face,
    detect_faces,
    embedding_distance,
    face_embedding,
)

# Style and texture statistics are taken at this long side: enough pixels for stable
# distributions, few enough for ~50 ms per image.
STATISTICS_LONG_SIDE = 512

# Structure is compared at the content's resolution, capped here.
STRUCTURE_LONG_SIDE = 1024

SLICED_DIRECTIONS = 64
SLICED_QUANTILES = 200
_DIRECTIONS_SEED = 20240601

TEXTURE_PYRAMID_LEVELS = 4
# Sobel directions in degrees; the fifth response per level is the Laplacian band.
TEXTURE_ANGLES = (0, 45, 90, 135)
TEXTURE_STATISTICS = TEXTURE_PYRAMID_LEVELS * (len(TEXTURE_ANGLES) + 1) * 2

# SSIM's c3 = c2 / 2 with c2 = (k2 * L_range)^2, k2 = 0.03 and L in [0, 100].
STRUCTURE_C = (0.03 * 100.0) ** 2 / 2
STRUCTURE_SIGMA = 1.5

# A face counts as kept when a face detected in the output overlaps its box this much.
KEPT_MIN_IOU = 0.4


def _projection_directions() -> np.ndarray:
    # Fixed once per process from a fixed seed, so every call projects on the same slices.
    normals = np.random.default_rng(_DIRECTIONS_SEED).normal(size=(SLICED_DIRECTIONS, 3))
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


# (64, 3) float64 unit vectors in Lab space.
SLICED_DIRECTION_VECTORS = _projection_directions()
# (200,) quantile levels (i + 0.5) / 200.
SLICED_QUANTILE_LEVELS = (np.arange(SLICED_QUANTILES) + 0.5) / SLICED_QUANTILES


@dataclass(frozen=True)
class FaceIdentity:
    """How one content face fared in an output.

    distance: dlib embedding distance content face vs the same box in the output
        (0 = identical; > 0.6 = dlib calls it a different person).
    kept: a face is still detected in the output overlapping the box with IoU >= 0.4.
    """

    distance: float
    kept: bool


@dataclass(frozen=True)
class OutputMetrics:
    """All metrics of one output; see the module docstring for their meaning.

    style, texture: ratios (lower is better, 1 = unchanged content, NaN when the content
        already equals the reference so the ratio is undefined).
    structure: mean SSIM structure term in [-1, 1] (higher is better).
    faces: one entry per content face, in the order of the faces given.
    """

    style: float
    texture: float
    structure: float
    faces: list[FaceIdentity] = field(default_factory=list)

    @property
    def faces_kept(self) -> int:
        return sum(face.kept for face in self.faces)

    @property
    def identity_median(self) -> float:
        """Median face distance; NaN without faces."""
        return float(np.median([f.distance for f in self.faces])) if self.faces else float("nan")

    @property
    def identity_worst(self) -> float:
        """Largest face distance; NaN without faces."""
        return max(f.distance for f in self.faces) if self.faces else float("nan")


def _check_image(image: np.ndarray, name: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{name} must be an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}"
        )


def _resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` = (width, height): INTER_AREA when shrinking, INTER_LINEAR when
    enlarging (INTER_AREA enlarges like nearest neighbour, which would invent blocky edges)."""
    height, width = image.shape[:2]
    if (width, height) == size:
        return image
    shrinking = size[0] * size[1] < width * height
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _long_side_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    factor = long_side / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def _lab(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB -> (H, W, 3) float32 Lab, L in [0, 100]."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _lab_at_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    return _lab(_resize_to(image, _long_side_size(width, height, long_side)))


def _sorted_quantiles(sorted_values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles along the last axis of already sorted values, NumPy's 'linear' method.

    ``np.quantile`` partitions for every level and is ~10x slower than one sort.
    """
    positions = levels * (sorted_values.shape[-1] - 1)
    below = np.floor(positions).astype(np.intp)
    above = np.minimum(below + 1, sorted_values.shape[-1] - 1)
    weight = positions - below
    lower = sorted_values[..., below].astype(np.float64)
    upper = sorted_values[..., above].astype(np.float64)
    return lower * (1 - weight) + upper * weight


def _sliced_quantiles(image: np.ndarray) -> np.ndarray:
    """(64, 200) float64: quantiles of the Lab pixels projected on each direction."""
    pixels = _lab_at_long_side(image, STATISTICS_LONG_SIDE).reshape(-1, 3)
    projected = SLICED_DIRECTION_VECTORS.astype(np.float32) @ pixels.T  # (64, N)
    projected.sort(axis=-1)
    return _sorted_quantiles(projected, SLICED_QUANTILE_LEVELS)


def sliced_wasserstein_lab(a: np.ndarray, b: np.ndarray) -> float:
    """Sliced 2-Wasserstein distance between the Lab colour distributions of two images.

    a, b: (H, W, 3) uint8 sRGB, any sizes (each is resized to long side 512 first).
    Returns a distance in Lab units (>= 0): per direction the RMS difference of 200
    quantiles, then the root mean square over the 64 fixed directions.
    """
    _check_image(a, "a")
    _check_image(b, "b")
    return _sliced_distance(_sliced_quantiles(a), _sliced_quantiles(b))


def _sliced_distance(quantiles_a: np.ndarray, quantiles_b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((quantiles_a - quantiles_b) ** 2)))


def _ratio(numerator: float, denominator: float) -> float:
    # Content identical to the reference (in this statistic) leaves nothing to transfer.
    return numerator / denominator if denominator > 1e-9 else float("nan")


def style_ratio(output: np.ndarray, content: np.ndarray, reference: np.ndarray) -> float:
    """SWD(output, reference) / SWD(content, reference); 0 = reference colours, 1 = unchanged.

    All three: (H, W, 3) uint8 sRGB of any size. NaN when content and reference have the
    same colour distribution.
    """
    for image, name in ((output, "output"), (content, "content"), (reference, "reference")):
        _check_image(image, name)
    reference_quantiles = _sliced_quantiles(reference)  # shared by both distances
    return _ratio(
        _sliced_distance(_sliced_quantiles(output), reference_quantiles),
        _sliced_distance(_sliced_quantiles(content), reference_quantiles),
    )


def _directional_responses(level: np.ndarray) -> list[np.ndarray]:
    """Sobel derivatives of ``level`` along 0/45/90/135 degrees.

    The 45° and 135° responses are the directional derivatives cos·gx + sin·gy of the
    Sobel x/y responses (first derivatives are steerable), not separately rotated kernels,
    so the four directions share one gradient and differ only by projection.
    """
    gx = cv2.Sobel(level, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(level, cv2.CV_32F, 0, 1, ksize=3)
    return [
        np.cos(np.deg2rad(angle)) * gx + np.sin(np.deg2rad(angle)) * gy for angle in TEXTURE_ANGLES
    ]


def texture_statistics(image: np.ndarray) -> np.ndarray:
    """40 texture statistics of the lightness channel.

    image: (H, W, 3) uint8 sRGB, resized to long side 512; L in [0, 100].
    Returns (40,) float64 ordered level-major (4 Gaussian pyramid levels, finest first),
    then response (Sobel 0°, 45°, 90°, 135°, Laplacian band = level - upsampled next
    level), then statistic (mean, std of log(1 + |response|)).
    """
    _check_image(image, "image")
    lightness = np.ascontiguousarray(_lab_at_long_side(image, STATISTICS_LONG_SIDE)[..., 0])
    pyramid = [lightness]
    # One extra level so the coarsest kept level also has a Laplacian band.
    for _ in range(TEXTURE_PYRAMID_LEVELS):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    statistics = []
    for level, coarser in itertools.pairwise(pyramid):
        upsampled = cv2.pyrUp(coarser, dstsize=(level.shape[1], level.shape[0]))
        for response in [*_directional_responses(level), level - upsampled]:
            magnitude = np.log1p(np.abs(response))
            statistics += [magnitude.mean(), magnitude.std()]
    return np.asarray(statistics, dtype=np.float64)


def texture_ratio(output: np.ndarray, content: np.ndarray, reference: np.ndarray) -> float:
    """L1(stats(output), stats(reference)) / L1(stats(content), stats(reference)).

    0 = the reference's texture statistics, 1 = unchanged; NaN when content and reference
    have identical statistics.
    """
    reference_stats = texture_statistics(reference)
    return _ratio(
        float(np.abs(texture_statistics(output) - reference_stats).sum()),
        float(np.abs(texture_statistics(content) - reference_stats).sum()),
    )


def structure_score(content: np.ndarray, output: np.ndarray) -> float:
    """Mean SSIM structure term (cov_xy + c) / (std_x * std_y + c), content vs output L.

    content, output: (H, W, 3) uint8 sRGB, any sizes. Compared at the content's size capped
    to long side 1024 (output resized to match); local statistics with a Gaussian window
    sigma = 1.5 (OpenCV's kernel, 13 taps), c = (0.03 * 100)^2 / 2.
    Returns a value in [-1, 1]: 1 for identical structure, invariant to gain and offset.
    """
    _check_image(content, "content")
    _check_image(output, "output")
    height, width = content.shape[:2]
    size = (width, height)
    if max(width, height) > STRUCTURE_LONG_SIDE:
        size = _long_side_size(width, height, STRUCTURE_LONG_SIDE)
    x = _lab(_resize_to(content, size))[..., 0].astype(np.float64)
    y = _lab(_resize_to(output, size))[..., 0].astype(np.float64)

    def local_mean(values: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(values, (0, 0), STRUCTURE_SIGMA)

    mean_x, mean_y = local_mean(x), local_mean(y)
    # Clamp tiny negative variances from cancellation in flat regions.
    variance_x = np.maximum(local_mean(x * x) - mean_x**2, 0)
    variance_y = np.maximum(local_mean(y * y) - mean_y**2, 0)
    covariance = local_mean(x * y) - mean_x * mean_y
    structure = (covariance + STRUCTURE_C) / (np.sqrt(variance_x * variance_y) + STRUCTURE_C)
    return float(structure.mean())


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes; 0 when disjoint."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def identity_scores(
    content: np.ndarray, output: np.ndarray, faces: tuple[Face, ...] | None = None
) -> list[FaceIdentity]:
    """Embedding distance and "kept" flag for each face of ``content`` in ``output``.

    content, output: (H, W, 3) uint8 sRGB; output may have another size (boxes are scaled
    per axis). faces: faces detected in ``content`` (content coordinates); None detects
    them with ``detect_faces`` at long side 1024. Returns one entry per face, same order.
    """
    _check_image(content, "content")
    _check_image(output, "output")
    if faces is None:
        faces = detect_faces(content, long_side=DETECTION_LONG_SIDE)
    if not faces:
        return []
    scale_x = output.shape[1] / content.shape[1]
    scale_y = output.shape[0] / content.shape[0]
    output_faces = detect_faces(output, long_side=DETECTION_LONG_SIDE)
    scores = []
    for face in faces:
        left, top, right, bottom = face.box
        box = (
            round(left * scale_x),
            round(top * scale_y),
            round(right * scale_x),
            round(bottom * scale_y),
        )
        distance = embedding_distance(
            face_embedding(content, face.box), face_embedding(output, box)
        )
        kept = any(box_iou(box, found.box) >= KEPT_MIN_IOU for found in output_faces)
        scores.append(FaceIdentity(distance=distance, kept=kept))
    return scores


def evaluate_output(
    content: np.ndarray,
    reference: np.ndarray,
    output: np.ndarray,
    faces: tuple[Face, ...] | None = None,
) -> OutputMetrics:
    """All four metrics of one output (see the individual functions).

    content, reference, output: (H, W, 3) uint8 sRGB; output is normally at the 2K output
    size. faces: content faces as from ``detect_faces(content)``; None detects them.
    """
    return OutputMetrics(
        style=style_ratio(output, content, reference),
        texture=texture_ratio(output, content, reference),
        structure=structure_score(content, output),
        faces=identity_scores(content, output, faces),
    )

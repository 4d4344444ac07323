"""Example-based texture transfer: the reference's marks (brush strokes, canvas, hatching,
halftone) on the restyled content, without neural weights.

Elad & Milanfar's style transfer by texture synthesis (IEEE TIP 2017), at a working
resolution, brought back to the output size through the content's own fine detail:

1. Working images: the content (already colour/tone-restyled by the classic engine) and
   the reference at the same long side ``synthesis_long_side`` (a stroke then covers the
   same share of the frame in both), in CIELab.
2. Content-fusion weights W per pixel (``fusion_weights``): a base that falls as
   ``strength`` rises, plus the content's edges (shapes survive), plus the faces and the
   skin around them (W huge: nothing is synthesised there).
3. Coarse to fine over a 3-level pyramid, from the content plus strong noise (flat
   regions must not copy flat example patches literally); at each level, for each patch
   size, a few rounds of: patch matching (``patchmatch.nearest_patches``: every grid
   patch of the estimate X to its nearest reference patch) -> robust aggregation
   (``patchmatch.aggregate_patches``) -> content fusion X = (X~ + W C) / (1 + W).
4. Palette and marks: the painted pixels get back the colour distribution they had
   before synthesis (``transport_palette``: patch averaging greys strokes), and each
   Laplacian band of their lightness gets one gain that brings the image's band energy
   from the content's (strength 0) towards the reference's (strength 1)
   (``match_bands``: the marks' contrast, which patch averaging softens or overshoots).
   Then, by ``palette_from_reference``, everything but the faces moves on to the
   painting's own palette, the faces held where they are (``transport_palette`` with
   ``hold_still``): the whole output, faces included, then has the painting's colour
   distribution as far as the faces allow, where a global colour map (the colour stage)
   cannot split one content colour over several paint colours.
5. Output (``_compose``): the upsampled synthesis, plus the content's detail above the
   working resolution in proportion to W / (1 + W) (all of it in faces and along edges,
   little where strokes replace the surface); where the face mask is 1 the output is the
   content, exactly.

Images are (H, W, 3) uint8 sRGB RGB, as everywhere in the package.
"""

from __future__ import annotations

import functools

import cv2
import numba
import numpy as np

from photoremix.engines.classic.patchmatch import (
    aggregate_patches,
    carry_field,
    nearest_patches,
    patch_grid,
)
from photoremix.vision.faces import Face
from photoremix.vision.identity import face_mask as face_skin_mask

# Working resolution. The evaluation's texture statistics are taken at long side 512, the
# synthesis cost grows with the pixel count: at 640 the whole stage takes 0.9-1.3 s per
# 2K output on this (shared, 2-core) machine.
SYNTHESIS_LONG_SIDE = 640

# (patch size, grid gap) per pyramid level, coarsest first; the levels are the working
# image at 1/4, 1/2 and full size. Large patches lay out whole strokes, small ones refine
# their edges (Elad & Milanfar use 33..9 px at ~400 px; measured on the portrait-art
# cases, 17/11 px at the coarse levels carry strokes that 13/9 px turn into canvas grain).
SCHEDULE: tuple[tuple[tuple[int, int], ...], ...] = (
    ((17, 6), (11, 4)),
    ((17, 7), (11, 5)),
    ((13, 6), (9, 4)),
)
# Matching -> aggregation -> fusion rounds per patch size.
ROUNDS = 2
# PatchMatch scans: more for the very first matching (random start), fewer later (each
# starts from the previous field, carried across patch sizes and levels).
FIRST_MATCH_ITERATIONS = 6
MATCH_ITERATIONS = 2
ROBUST_POWER = 0.8  # r of the robust aggregation (Elad & Milanfar)
IRLS_ITERATIONS = 3
INITIAL_NOISE = 20.0  # std of the starting noise on L (0..100) at the coarsest level

# Fusion weights W = FUSION_BASE * (1 - s) / s + FUSION_EDGE * edges**2
#                    + min(q / (1 - q), FUSION_FACE), q = min(1, max(face, skin) / FACE_FADE).
FUSION_BASE = 0.5
FUSION_EDGE = 10.0
FUSION_FACE = 1e4  # on the faces (p = 1) nothing is synthesised
# Protection is full from this mask value on (the inner part of a face mask's feather)
# and fades out below it.
FACE_FADE = 0.5
# Edges: gradient magnitude of L blurred by EDGE_SIGMA px, relative to its
# EDGE_PERCENTILE-th percentile.
EDGE_SIGMA = 1.5
EDGE_PERCENTILE = 95
# Skin model around the faces: (chroma spread in standard deviations, reach in face
# diameters from the face mask). Tight by default: the restyled content can make hair and
# a warm background skin-coloured, and those should be painted; "keep skin" widens it to
# necks, shoulders and hands.
SKIN = (1.0, 0.5)
SKIN_KEPT = (1.5, 2.5)

# Palette restoration: sliced-transport iterations, blur (working px) of the local mean
# colour that is moved. Band matching: Laplacian bands, and the range and bisection steps
# of each band's gain.
PALETTE_ITERATIONS = 4
PALETTE_BLUR = 3.0
# Transport to the reference's palette: finer, so the result's distribution (strokes
# included) is the palette's, not the palette widened by the strokes' contrast
# (blonde_girl / Picasso: style 0.17 at a 3 px blur, 0.07 at 1 px), and more iterations
# (portrait-art style median 0.114 at 8, 0.097 at 16; ~20 ms each at 640 x 480 here).
HELD_PALETTE_ITERATIONS = 16
REFERENCE_PALETTE_BLUR = 1.0
BAND_LEVELS = 4
BAND_GAIN_RANGE = (0.25, 4.0)
BAND_BISECTIONS = 12
# 1-D distribution matches: quantile knots, the sample they are estimated from, and the
# lookup table they are applied through.
QUANTILES = 128
QUANTILE_SAMPLE = 20_000
LOOKUP_BINS = 4096

# The protected face: the identity module's skin ellipse (cheek to cheek, eye line to
# chin, ~0.85 eye distances above the eyes) grown by FACE_SCALE about its centre, so the
# forehead up to the hairline is covered too; feathered over FACE_FEATHER eye distances
# so strokes fade in towards the face rather than stopping at a hard outline.
FACE_SCALE = 1.25
FACE_FEATHER = 0.6


def face_protection_mask(
    faces: tuple[Face, ...], source_shape: tuple[int, ...], size: tuple[int, int]
) -> np.ndarray:
    """(H, W) float32 in [0, 1] at output ``size`` = (width, height): 1 on each face's skin
    (forehead to chin, cheek to cheek, placed by the landmarks), feathered outwards.

    faces: detected in an image of ``source_shape`` (their pixel coordinates). This is the
    ``face_mask`` ``transfer_texture`` expects: hair, hats and the background around a
    head stay paintable, which keeps a close-up portrait from carrying an unpainted halo,
    while the face, where identity lives, is untouched. (The colour guard's masks,
    ``face_guard.guard_masks``, reach further, over a skin-coloured forehead, ears and
    neck: as the texture mask they would leave such a halo.)
    """
    width, height = size
    if not faces:
        return np.zeros((height, width), np.float32)
    # Drawn at a quarter of the output size (a smooth mask needs no more), then upsampled.
    small_size = (max(1, round(width / 4)), max(1, round(height / 4)))
    mask = np.zeros((small_size[1], small_size[0]), np.float32)
    scale_x, scale_y = small_size[0] / source_shape[1], small_size[1] / source_shape[0]
    for face in faces:
        box = np.asarray(face.box, np.float64) * [scale_x, scale_y, scale_x, scale_y]
        landmarks = np.asarray(face.landmarks, np.float64) * [scale_x, scale_y]
        if landmarks.shape == (5, 2):
            # identity.face_mask places its ellipse linearly from the landmarks, so scaling
            # them about the ellipse's centre (0.45 eye distances below the eyes) scales it.
            eyes = (landmarks[0:2].mean(0) + landmarks[2:4].mean(0)) / 2
            across = landmarks[0:2].mean(0) - landmarks[2:4].mean(0)
            centre = eyes + 0.45 * np.array([-across[1], across[0]])
            landmarks = centre + FACE_SCALE * (landmarks - centre)
        box_centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2] * 2)
        box = box_centre + FACE_SCALE * (box - box_centre)
        scaled = Face(
            box=tuple(round(float(v)) for v in box),  # type: ignore[arg-type]
            landmarks=landmarks.astype(np.float32),
            score=face.score,
        )
        np.maximum(mask, face_skin_mask(mask.shape, scaled, feather=FACE_FEATHER), out=mask)
    return np.clip(cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB array")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")


def _size_at_long_side(shape: tuple[int, ...], long_side: int) -> tuple[int, int]:
    """(width, height) of an image of ``shape`` scaled to ``long_side`` (never enlarged)."""
    height, width = shape[:2]
    factor = min(1.0, long_side / max(height, width))
    return max(1, round(width * factor)), max(1, round(height * factor))


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB -> float32 Lab (L 0..100)."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _to_rgb(lab: np.ndarray) -> np.ndarray:
    """float32 Lab -> float32 sRGB, clipped to [0, 1]."""
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)


def _mask_at(mask: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """A 0..1 mask (float, or uint8 read as 0..255) as (h, w) float32 at ``size``."""
    width, height = size
    if mask is None:
        return np.zeros((height, width), np.float32)
    values = np.asarray(mask)
    if values.ndim != 2:
        raise ValueError(f"face_mask must be a 2-D array, got shape {values.shape}")
    values = values.astype(np.float32) / (255.0 if values.dtype == np.uint8 else 1.0)
    if values.shape != (height, width):
        values = cv2.resize(values, size, interpolation=cv2.INTER_LINEAR)
    return np.clip(values, 0.0, 1.0)


def edge_strength(lab: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how strongly each pixel sits on a content edge.

    Gradient magnitude of L, blurred (sigma EDGE_SIGMA px) so a shape's outline keeps a
    band of content around it, divided by its EDGE_PERCENTILE-th percentile and clipped:
    a relative measure, so a low-contrast photo still keeps its main shapes and a busy
    one still gets painted between them.
    """
    lightness = np.ascontiguousarray(lab[..., 0])
    gx = cv2.Sobel(lightness, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lightness, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy), (0, 0), EDGE_SIGMA)
    scale = max(float(np.percentile(magnitude, EDGE_PERCENTILE)), 1e-3)
    return np.clip(magnitude / scale, 0.0, 1.0)


def skin_likelihood(
    lab: np.ndarray, face: np.ndarray, spread: float = SKIN[0], reach: float = SKIN[1]
) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how likely each pixel is skin of the people whose faces
    ``face`` marks (neck, ears), so strokes do not cover it either.

    An adaptive skin model: a Gaussian of the a/b chroma of the pixels deep inside the
    face masks (covariance floored at 3 Lab units of spread; JPEG chroma is blocky) whose
    likelihood falls to exp(-1/2) at ``spread`` standard deviations, gated by the faces'
    lightness range and by a spatial prior that fades ``reach`` face diameters beyond
    the masks.
    lab: (H, W, 3) float32; face: (H, W) float32 in [0, 1].
    """
    core = face >= 0.9
    if core.sum() < 50:
        return np.zeros(face.shape, np.float32)
    samples = lab[..., 1:][core].astype(np.float64)
    inverse = np.linalg.inv(np.cov(samples, rowvar=False) + np.eye(2) * 9.0).astype(np.float32)
    offsets = lab[..., 1:].reshape(-1, 2) - samples.mean(0).astype(np.float32)
    distance2 = np.einsum("ni,ij,nj->n", offsets, inverse, offsets).reshape(face.shape)
    colour = np.exp(-0.5 * distance2 / spread**2)
    lightness = lab[..., 0]
    low, high = np.percentile(lightness[core], [2, 98])
    tone = np.clip(1.0 - np.maximum(low - lightness, lightness - high) / 15.0, 0.0, 1.0)
    faces, _ = cv2.connectedComponents((face >= 0.5).astype(np.uint8))
    diameter = np.sqrt(4.0 / np.pi * float((face >= 0.5).sum()) / max(faces - 1, 1))
    distance = cv2.distanceTransform((face < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    prior = np.exp(-0.5 * (distance / (reach * max(diameter, 1.0))) ** 2)
    return (colour * tone * prior).astype(np.float32)


def fusion_weights(edges: np.ndarray, protected: np.ndarray, strength: float) -> np.ndarray:
    """Content-fusion weights W (H, W) float32 >= 0; each fusion is X = (X~ + W C) / (1 + W).

    edges: (H, W) float32 in [0, 1] (``edge_strength``); protected: (H, W) float32 in
    [0, 1] (faces and skin). A pixel protected to p keeps at least the share
    q = min(1, p / FACE_FADE) of the content (its term is q / (1 - q), capped at
    FUSION_FACE): strokes fade in across the outer part of a face mask's feather instead
    of stopping at its outer edge, which would leave an unpainted halo around every head.
    strength: > 0. The base FUSION_BASE * (1 - s) / s is 0 at s = 1 (only edges and
    faces hold the content) and grows without bound as s -> 0; above 1 it is negative
    and eats into the edges' weight (W stays >= 0).
    """
    base = FUSION_BASE * (1.0 - strength) / strength
    p = np.clip(protected / FACE_FADE, 0.0, 1.0)
    face = np.minimum(p / np.maximum(1.0 - p, 1.0 / FUSION_FACE), FUSION_FACE)
    weights = base + FUSION_EDGE * edges**2 + face
    return np.maximum(weights, 0.0).astype(np.float32)


def _pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` images, coarsest first, each half the size of the next (INTER_AREA)."""
    pyramid = [image]
    for _ in range(levels - 1):
        height, width = pyramid[0].shape[:2]
        size = (max(1, round(width / 2)), max(1, round(height / 2)))
        pyramid.insert(0, cv2.resize(pyramid[0], size, interpolation=cv2.INTER_AREA))
    return pyramid


def synthesize(
    content_lab: np.ndarray, reference_lab: np.ndarray, weights: np.ndarray, *, seed: int
) -> np.ndarray:
    """Texture synthesis with content fusion at the working resolution (steps 3 above).

    content_lab: (H, W, 3) float32 Lab; reference_lab: (Hr, Wr, 3) float32 Lab, the
    example; weights: (H, W) float32 fusion weights (``fusion_weights``). Patch sizes that
    do not fit a level (tiny images) are skipped. Returns (H, W, 3) float32 Lab.
    """
    levels = len(SCHEDULE)
    contents = _pyramid(content_lab, levels)
    examples = _pyramid(reference_lab, levels)
    fusions = [w[..., None] for w in _pyramid(weights, levels)]
    rng = np.random.default_rng(seed)
    estimate = contents[0].copy()
    # Noise on lightness only: chroma noise would seed rainbow speckle.
    estimate[..., 0] += rng.normal(0.0, INITIAL_NOISE, estimate.shape[:2]).astype(np.float32)
    estimate = (estimate + fusions[0] * contents[0]) / (1.0 + fusions[0])  # none on faces
    round_seed = seed
    # The last field and its grid: every new patch size and level starts from it.
    field, grid, grid_patch, grid_level = None, (np.zeros(0), np.zeros(0)), 0, 0
    for level, schedule in enumerate(SCHEDULE):
        content, example, fusion = contents[level], examples[level], fusions[level]
        if estimate.shape != content.shape:
            size = (content.shape[1], content.shape[0])
            estimate = cv2.resize(estimate, size, interpolation=cv2.INTER_LINEAR)
        for patch, gap in schedule:
            if patch > min(*content.shape[:2], *example.shape[:2]):
                continue
            rows = patch_grid(content.shape[0], patch, gap)
            cols = patch_grid(content.shape[1], patch, gap)
            if field is not None:
                scale = 2.0 ** (level - grid_level)
                field = carry_field(field, grid, grid_patch, (rows, cols), patch, scale)
            iterations = FIRST_MATCH_ITERATIONS if field is None else MATCH_ITERATIONS
            grid, grid_patch, grid_level = (rows, cols), patch, level
            for _ in range(ROUNDS):
                round_seed += 1
                field, _ = nearest_patches(
                    estimate,
                    example,
                    rows,
                    cols,
                    patch,
                    iterations=iterations,
                    seed=round_seed,
                    initial=field,
                )
                iterations = MATCH_ITERATIONS
                synthesised = aggregate_patches(
                    estimate,
                    example,
                    rows,
                    cols,
                    patch,
                    field,
                    robust_power=ROBUST_POWER,
                    iterations=IRLS_ITERATIONS,
                )
                estimate = (synthesised + fusion * content) / (1.0 + fusion)
    return estimate


def _quantile_knots(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(QUANTILES,) float32 quantiles of 1-D ``values``, from a random subsample."""
    values = _subsample(values, rng)
    levels = (np.arange(QUANTILES) + 0.5) / QUANTILES
    return np.quantile(values, levels).astype(np.float32)


def _lookup(values: np.ndarray, knots: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """``values`` through the monotone piecewise-linear map ``knots`` -> ``goal`` (both
    (QUANTILES,) quantiles; flat beyond the ends).

    The map is tabulated on LOOKUP_BINS even steps over the range of ``values`` and read
    back by index: ~10x faster than ``np.interp`` on every value.
    """
    # Ties (flat regions) would make the map jump; nudge the knots to strictly increase.
    knots = knots + np.arange(QUANTILES, dtype=np.float32) * 1e-4
    low, high = float(values.min()), float(values.max())
    step = max(high - low, 1e-6) / (LOOKUP_BINS - 1)
    table = np.interp(low + step * np.arange(LOOKUP_BINS), knots, goal).astype(np.float32)
    index = ((values - low) * (1.0 / step) + 0.5).astype(np.int32)
    return table[np.clip(index, 0, LOOKUP_BINS - 1)]


def _relative(paint: np.ndarray) -> np.ndarray:
    """The paint share relative to its maximum: at a low strength no pixel is more than
    partly synthesised, and those that are the most still need their statistics fixed."""
    top = float(paint.max())
    return paint / top if top > 1e-6 else paint


def _held_goal(
    knots: np.ndarray, held: np.ndarray, held_share: float, target: np.ndarray
) -> np.ndarray:
    """(QUANTILES,) goals for the moving values' quantile ``knots`` when the ``held``
    values stay where they are and moving and held together must match ``target``.

    In 1-D the optimal transport of the whole onto the target sends the value of combined
    rank r to the target's quantile r: a moving value at its own quantile u has the
    share (1 - h) u of all values below it among the moving ones, plus h times the
    fraction of held values below it. held, target: 1-D float32 samples; held_share: h,
    the held values' share of all values.
    """
    levels = (np.arange(QUANTILES) + 0.5) / QUANTILES
    held_below = np.searchsorted(np.sort(held), knots) / max(held.size, 1)
    rank = (1.0 - held_share) * levels + held_share * held_below
    return np.quantile(target, rank).astype(np.float32)


def transport_palette(
    lab: np.ndarray,
    palette: np.ndarray,
    moving: np.ndarray,
    *,
    seed: int,
    hold_still: bool = False,
    blur: float = PALETTE_BLUR,
) -> np.ndarray:
    """Pixels' colours moved onto the distribution ``palette``.

    Sliced optimal transport (Pitie's iterative distribution transfer: rotate the Lab
    points, match each axis's quantiles, repeat) of the local mean colour (a blurred
    copy), each pixel moving with it: texture keeps its contrast instead of being
    recoloured grain by grain into speckle.
    lab: (H, W, 3) float32; palette: (..., 3) float32 Lab colours to match; moving:
    (H, W) float32 in [0, 1], how much of its colour's displacement each pixel takes
    (relative to the largest). Pixels with (relative) moving >= 0.5 define the
    distribution that is moved.
    hold_still: False matches the moving pixels' distribution to ``palette``. True
    matches the whole image's distribution to ``palette`` with the other pixels held
    where they are: the moving ones take the palette's colours that the held ones do not
    already show (``_held_goal``).
    blur: Gaussian sigma (px) of the local mean that is moved; the detail finer than it
    rides along unchanged and widens the result's distribution by its own contrast.
    Returns (H, W, 3) float32.
    """
    moving = _relative(moving)
    selected = (moving >= 0.5).ravel()
    if selected.sum() < 64:
        return lab
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(lab, (0, 0), blur)
    # Channels-first (3, N): each rotation is one well-shaped matrix product.
    points = np.ascontiguousarray(base.reshape(-1, 3).T, dtype=np.float32)
    target = np.ascontiguousarray(palette.reshape(-1, 3).T, dtype=np.float32)
    held = np.flatnonzero(~selected) if hold_still else np.zeros(0, np.intp)
    held_share = held.size / selected.size
    held = _subsample(held, rng)
    iterations = HELD_PALETTE_ITERATIONS if hold_still else PALETTE_ITERATIONS
    moved = points.copy()
    for _ in range(iterations):
        rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32)
        axes = rotation.T @ moved
        target_axes = rotation.T @ target
        for axis in range(3):
            knots = _quantile_knots(axes[axis, selected], rng)
            if held.size:
                # the held pixels at their own colours: they move little (moving < 0.5)
                held_axis = rotation[:, axis] @ points[:, held]
                goal = _held_goal(knots, held_axis, held_share, _subsample(target_axes[axis], rng))
            else:
                goal = _quantile_knots(target_axes[axis], rng)
            axes[axis] = _lookup(axes[axis], knots, goal)
        moved = rotation @ axes
    return lab + (moving.reshape(1, -1) * (moved - points)).T.reshape(lab.shape)


def _subsample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most QUANTILE_SAMPLE of the 1-D ``values``, drawn at random."""
    if values.size > QUANTILE_SAMPLE:
        return values[rng.integers(0, values.size, QUANTILE_SAMPLE)]
    return values


def _laplacian_bands(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid of a 2-D float32 image: ``levels`` bands, finest first, then the
    low-pass residual."""
    bands = []
    current = image
    for _ in range(levels):
        smaller = cv2.pyrDown(current)
        bands.append(current - cv2.pyrUp(smaller, dstsize=(current.shape[1], current.shape[0])))
        current = smaller
    return [*bands, current]


def _collapse(bands: list[np.ndarray]) -> np.ndarray:
    current = bands[-1]
    for band in reversed(bands[:-1]):
        current = cv2.pyrUp(current, dstsize=(band.shape[1], band.shape[0])) + band
    return current


def _band_energy(band: np.ndarray) -> float:
    """Mean log(1 + |value|) of a band: the evaluation's texture statistic, per band."""
    return float(np.log1p(np.abs(band)).mean())


def match_bands(
    lightness: np.ndarray,
    content_lightness: np.ndarray,
    reference_lightness: np.ndarray,
    paint: np.ndarray,
    *,
    towards_reference: float,
) -> np.ndarray:
    """Per-band energy matching of lightness detail (a gain-only Heeger & Bergen).

    Patch averaging and content fusion soften detail (a blend of two unrelated textures
    has less contrast than either); strokes can also add more than the reference has.
    Each Laplacian band of the painted pixels is therefore scaled by one gain, found by
    bisection, that brings the whole image's band energy (mean log(1 + |band|)) to
    ``(1 - t) E_content + t E_reference`` at t = ``towards_reference``: 0 keeps the
    content's detail level, 1 takes the reference's. A gain scales what is there and
    invents no shapes; pixels move by their (relative) paint share.
    lightness, content_lightness: (H, W) float32 L, synthesised and original;
    reference_lightness: (Hr, Wr) float32 L at the same scale; paint: (H, W) float32 in
    [0, 1] as in ``transport_palette``. Returns (H, W) float32.
    """
    paint = _relative(paint)
    if (paint >= 0.5).sum() < 64:
        return lightness
    bands = _laplacian_bands(lightness, BAND_LEVELS)
    content_bands = _laplacian_bands(content_lightness, BAND_LEVELS)
    reference_bands = _laplacian_bands(reference_lightness, BAND_LEVELS)
    for level in range(BAND_LEVELS):
        band = bands[level]
        weight = cv2.resize(paint, (band.shape[1], band.shape[0]), interpolation=cv2.INTER_AREA)
        goal = (1.0 - towards_reference) * _band_energy(
            content_bands[level]
        ) + towards_reference * _band_energy(reference_bands[level])
        low, high = BAND_GAIN_RANGE
        for _ in range(BAND_BISECTIONS):  # the energy grows with the gain
            gain = np.sqrt(low * high)
            if _band_energy(band * (1.0 + weight * (gain - 1.0))) < goal:
                low = gain
            else:
                high = gain
        bands[level] = band * (1.0 + weight * (np.sqrt(low * high) - 1.0))
    return _collapse(bands)


def transfer_texture(
    content: np.ndarray,
    reference: np.ndarray,
    *,
    strength: float,
    face_mask: np.ndarray | None = None,
    seed: int = 0,
    keep_skin: bool = False,
    palette_from_reference: float = 0.0,
    synthesis_long_side: int = SYNTHESIS_LONG_SIDE,
) -> np.ndarray:
    """The reference's marks synthesised onto ``content``.

    content: (H, W, 3) uint8 sRGB, the already restyled output (normally at 2K).
    reference: (Hr, Wr, 3) uint8 sRGB, any size.
    strength: 0 returns ``content`` itself; 1 is the full transfer (only edges and faces
        keep the content); in between, more of the content is kept everywhere; up to 2
        (a "stronger" directive) also paints over weaker edges.
    face_mask: (h, w) soft mask at any resolution, 1 = face (float in [0, 1], or uint8
        read as 0..255), normally ``face_protection_mask``; nothing is synthesised where
        it is 1 and the output equals the content there. None: no faces.
    seed: drives the starting noise and the patch search; same inputs and seed, same
        output.
    keep_skin: also keep skin-coloured areas up to 2.5 face diameters from the faces
        (necks, shoulders, hands) free of strokes (the "keep skin tones" directive);
        by default only skin right next to a face is.
    palette_from_reference: 0..1, how far the painted pixels then move from the
        content's colours to the reference's palette, the faces and edges held
        (``transport_palette`` with ``hold_unpainted``): at 1 the whole output's colour
        distribution is the painting's as far as what is held allows.
    synthesis_long_side: working resolution of the synthesis (never above the content's).
    Returns (H, W, 3) uint8 sRGB. A content or reference too small for the pyramid's
    patches (short side under 36 px at the working scale) is returned unchanged.
    Raises ValueError for arrays that are not (H, W, 3) uint8 or a strength outside 0..2.
    """
    _check_image(content, "content")
    _check_image(reference, "reference")
    if not 0.0 <= float(strength) <= 2.0:
        raise ValueError(f"strength must be between 0 and 2, got {strength}")
    height, width = content.shape[:2]
    work_size = _size_at_long_side(content.shape, synthesis_long_side)
    # The reference at the content's working long side: stroke size relative to the frame
    # is what the eye (and the texture statistics) compare.
    reference_size = _size_at_long_side(reference.shape, max(work_size))
    smallest_patch = min(patch for level in SCHEDULE for patch, _ in level)
    coarsest = 2 ** (len(SCHEDULE) - 1)
    too_small = min(*reference_size, *work_size) < smallest_patch * coarsest
    if strength == 0 or too_small:
        return content

    content_small = cv2.resize(content, work_size, interpolation=cv2.INTER_AREA)
    reference_lab = _to_lab(cv2.resize(reference, reference_size, interpolation=cv2.INTER_AREA))
    content_lab = _to_lab(content_small)
    face_small = _mask_at(face_mask, work_size)
    skin = skin_likelihood(content_lab, face_small, *(SKIN_KEPT if keep_skin else SKIN))
    protected = np.maximum(face_small, skin)
    weights = fusion_weights(edge_strength(content_lab), protected, float(strength))

    synthesised = synthesize(content_lab, reference_lab, weights, seed=seed)
    paint = 1.0 / (1.0 + weights)
    palette = content_lab[_relative(paint) >= 0.5]
    synthesised = transport_palette(synthesised, palette, paint, seed=seed)
    synthesised[..., 0] = match_bands(
        np.ascontiguousarray(synthesised[..., 0]),
        np.ascontiguousarray(content_lab[..., 0]),
        np.ascontiguousarray(reference_lab[..., 0]),
        paint,
        towards_reference=min(float(strength), 1.0),
    )
    if palette_from_reference > 0:
        # Everything but the faces and their skin moves, edges included (the colour stage
        # moved them too); the faces are held, and the rest takes what they lack.
        free = 1.0 - np.clip(protected / FACE_FADE, 0.0, 1.0)
        painted = transport_palette(
            synthesised,
            reference_lab,
            free,
            seed=seed + 1,
            hold_still=True,
            blur=REFERENCE_PALETTE_BLUR,
        )
        synthesised += float(min(palette_from_reference, 1.0)) * (painted - synthesised)

    output = np.empty_like(content)
    _compose(
        content,
        np.ascontiguousarray(_to_rgb(synthesised)),
        content_small.astype(np.float32) / 255.0,
        np.ascontiguousarray(weights / (1.0 + weights), dtype=np.float32),
        _mask_at(face_mask, (width, height)) if face_mask is not None else np.zeros((1, 1)),
        output,
    )
    return output


@functools.cache
def warm_up() -> None:
    """Compile the kernels, or load them from numba's on-disk cache, on a tiny synthetic
    pair, so the first real request does not pay for it. Once per process (later calls
    return at once); ~1 s from the cache here."""
    rng = np.random.default_rng(0)
    pair = rng.integers(40, 200, size=(2, 48, 48, 3), dtype=np.uint8)
    transfer_texture(pair[0], pair[1], strength=1.0, face_mask=np.zeros((48, 48), np.float32))


@numba.njit(cache=True, inline="always")
def _bilinear(image, channel, fy, fx):  # fmt: skip
    # Sample channel ``channel`` of (h, w, C) ``image`` at fractional (fy, fx), clamped.
    h, w = image.shape[0], image.shape[1]
    fy = min(max(fy, 0.0), h - 1.0)
    fx = min(max(fx, 0.0), w - 1.0)
    y0, x0 = int(fy), int(fx)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    wy, wx = fy - y0, fx - x0
    top = image[y0, x0, channel] * (1 - wx) + image[y0, x1, channel] * wx
    bottom = image[y1, x0, channel] * (1 - wx) + image[y1, x1, channel] * wx
    return top * (1 - wy) + bottom * wy


@numba.njit(cache=True)
def _compose(content, synthesised, base, keep, face, out):  # fmt: skip
    # Per output pixel: the working-resolution synthesis, bilinearly upsampled, plus the
    # content's detail above the working resolution (content - upsampled content) scaled
    # by ``keep`` (the fusion's content share); the face mask then blends back to the
    # content. content, out: (H, W, 3) uint8; synthesised, base: (h, w, 3) float32 in
    # [0, 1]; keep: (h, w) float32; face: (H, W) float in [0, 1], or (1, 1) for none.
    H, W, _ = content.shape
    h, w = synthesised.shape[:2]
    sy, sx = h / H, w / W
    has_face = face.shape[0] == H
    keep3 = keep.reshape(h, w, 1)
    for y in range(H):
        fy = (y + 0.5) * sy - 0.5
        for x in range(W):
            f = face[y, x] if has_face else 0.0
            if f >= 1.0:
                for c in range(3):
                    out[y, x, c] = content[y, x, c]
                continue
            fx = (x + 0.5) * sx - 0.5
            k = _bilinear(keep3, 0, fy, fx)
            for c in range(3):
                original = content[y, x, c] / 255.0
                value = _bilinear(synthesised, c, fy, fx)
                value += k * (original - _bilinear(base, c, fy, fx))
                value = f * original + (1.0 - f) * value
                q = value * 255.0 + 0.5
                out[y, x, c] = 0 if q < 0 else (255 if q >= 255 else int(q))

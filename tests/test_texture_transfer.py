"""The classic engine's texture-transfer stage: patch matching, aggregation, fusion, the
"artistic reference" detector, the stage end to end, and the stage inside
``ClassicEngine.remix`` (engines/classic/texture.py, patchmatch.py, artistic.py,
engine.py).

Synthetic data only, plus skimage's astronaut and coffee and matplotlib's Grace Hopper
(public domain). The synthetic "paintings" are made here: short thick strokes along a
flow field on a canvas weave, and a one-ink halftone print.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import skimage.data
from matplotlib import cbook
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from photoremix.engines.base import RemixOutput, RemixRequest
from photoremix.engines.classic import ClassicEngine
from photoremix.engines.classic import texture as texture_module
from photoremix.engines.classic.artistic import artistic_strength, texture_evidence
from photoremix.engines.classic.directives import parse_directives
from photoremix.engines.classic.engine import reference_palette_share, texture_strength
from photoremix.engines.classic.patchmatch import (
    aggregate_patches,
    aggregation_window,
    carry_field,
    nearest_patches,
    patch_grid,
)
from photoremix.engines.classic.texture import (
    FUSION_FACE,
    face_protection_mask,
    fusion_weights,
    transfer_texture,
    transport_palette,
)
from photoremix.engines.classic.variations import VARIATIONS
from photoremix.evaluation.metrics import identity_scores, style_ratio, texture_ratio
from photoremix.vision.faces import detect_faces

# A small working resolution keeps each synthesis well under a second.
FAST_SIDE = 256


def brush_painting(subject: np.ndarray | None = None, size: int = 384, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8: a painterly rendering of ``subject`` (default skimage's
    coffee): short thick strokes in the subject's colours, laid along its isophotes, over
    a canvas weave; no pixel near black or white (paint, not light)."""
    rng = np.random.default_rng(seed)
    subject = skimage.data.coffee() if subject is None else subject
    base = cv2.resize(subject, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 2.0)
    grey = cv2.cvtColor(base, cv2.COLOR_RGB2GRAY)
    # Strokes follow the isophotes (across the gradient), as a painter's do.
    flow = np.arctan2(cv2.Sobel(grey, cv2.CV_32F, 1, 0), -cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    canvas = np.full_like(base, 128.0)
    for _ in range(size * size // 12):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        angle = flow[y, x] + rng.normal(0, 0.15)
        half = rng.uniform(4, 10)
        dx, dy = np.cos(angle) * half, np.sin(angle) * half
        colour = np.clip(base[y, x] + rng.normal(0, 25, 3), 25, 230)
        start, end = (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy))
        width = int(rng.integers(3, 6))
        cv2.line(canvas, start, end, colour.tolist(), width, cv2.LINE_AA)
    weave = np.sin(np.pi * np.arange(size) / 2)
    canvas += 5 * weave[None, :, None] * weave[:, None, None]
    return np.clip(canvas + rng.normal(0, 2, canvas.shape), 25, 230).astype(np.uint8)


def halftone(image: np.ndarray, cell: int = 6) -> np.ndarray:
    """``image`` printed in one ink: dots on a 45-degree screen, on off-white paper."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    ys, xs = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]].astype(np.float32)
    u, v = (xs + ys) / np.sqrt(2), (xs - ys) / np.sqrt(2)
    distance = np.hypot(u % cell - cell / 2, v % cell - cell / 2) / (cell / 2)
    ink = (distance < 1.1 * np.sqrt(np.clip(1 - grey, 0.08, 1.0))).astype(np.float32)
    ink = cv2.GaussianBlur(ink, (0, 0), 0.7)[..., None]
    paper, colour = np.float32([236, 230, 214]), np.float32([40, 38, 60])
    return (paper * (1 - ink) + colour * ink).astype(np.uint8)


def grace_hopper() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as file:
        return np.asarray(Image.open(file).convert("RGB"))


def brute_force_nearest(
    X: np.ndarray, S: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int
) -> np.ndarray:
    """(gh, gw) exact smallest SSD of each grid patch of X over every patch of S."""
    example = sliding_window_view(S.astype(np.float64), (patch, patch), axis=(0, 1))
    example = example.reshape(-1, S.shape[2] * patch * patch)
    queries = sliding_window_view(X.astype(np.float64), (patch, patch), axis=(0, 1))
    queries = queries[rows][:, cols].reshape(len(rows) * len(cols), -1)
    squared = (queries**2).sum(1)[:, None] + (example**2).sum(1)[None, :] - 2 * queries @ example.T
    return squared.min(axis=1).reshape(len(rows), len(cols))


def ssd_at(X: np.ndarray, S: np.ndarray, y: int, x: int, sy: int, sx: int, patch: int) -> float:
    diff = X[y : y + patch, x : x + patch] - S[sy : sy + patch, sx : sx + patch]
    return float((diff.astype(np.float64) ** 2).sum())


# --- patch matching ---------------------------------------------------------------------


def test_patch_grid_covers_every_pixel() -> None:
    starts = patch_grid(23, 5, 4)
    covered = np.zeros(23, bool)
    for start in starts:
        covered[start : start + 5] = True
    assert covered.all()
    assert starts[0] == 0 and starts[-1] == 23 - 5
    assert np.all(np.diff(starts) <= 4)
    with pytest.raises(ValueError):
        patch_grid(4, 5, 2)
    with pytest.raises(ValueError):
        patch_grid(20, 5, 6)


def test_patch_matching_approaches_the_brute_force_nearest_patches() -> None:
    rng = np.random.default_rng(1)
    # Two unrelated smooth random images: no coherence for propagation to exploit, the
    # hardest case for PatchMatch.
    S = cv2.GaussianBlur(rng.uniform(0, 100, (40, 44, 3)).astype(np.float32), (0, 0), 1.5)
    X = cv2.GaussianBlur(rng.uniform(0, 100, (26, 30, 3)).astype(np.float32), (0, 0), 1.5)
    patch = 5
    rows, cols = patch_grid(26, patch, 2), patch_grid(30, patch, 2)
    exact = brute_force_nearest(X, S, rows, cols, patch)
    field, distances = nearest_patches(X, S, rows, cols, patch, iterations=12, seed=3)

    # The returned distances are the true SSDs of the returned matches, never below the
    # exact nearest.
    for i, y in enumerate(rows):
        for j, x in enumerate(cols):
            sy, sx = field[i, j]
            assert distances[i, j] == pytest.approx(ssd_at(X, S, y, x, sy, sx, patch), rel=1e-4)
    assert np.all(distances >= exact * (1 - 1e-4))

    # Far better than the random field it starts from, and close to exact.
    start = rng.integers(0, 36, (len(rows), len(cols), 2)).astype(np.int32)
    random_distances = nearest_patches(X, S, rows, cols, patch, iterations=0, initial=start)[1]
    assert np.median(random_distances / exact) > 3
    assert np.median(distances / exact) < 1.15
    # More scans (same seed: the same first 12) never do worse, and converge on exact.
    longer = nearest_patches(X, S, rows, cols, patch, iterations=40, seed=3)[1]
    assert np.all(longer <= distances * (1 + 1e-6))
    assert np.isclose(longer, exact, rtol=1e-3).mean() >= 0.5
    assert np.median(longer / exact) < 1.01


def test_patch_matching_recovers_a_crop_of_the_example() -> None:
    rng = np.random.default_rng(2)
    S = cv2.GaussianBlur(rng.uniform(0, 100, (48, 48, 3)).astype(np.float32), (0, 0), 1.0)
    X = S[10:34, 7:35].copy()  # X is S shifted by (10, 7)
    rows, cols = patch_grid(24, 7, 3), patch_grid(28, 7, 3)
    field, distances = nearest_patches(X, S, rows, cols, 7, iterations=8, seed=0)
    exact = (field[..., 0] == rows[:, None] + 10) & (field[..., 1] == cols[None, :] + 7)
    assert exact.mean() >= 0.95
    assert np.all(distances[exact] < 1e-6)


def test_patch_matching_is_deterministic_and_validates_its_grid() -> None:
    rng = np.random.default_rng(4)
    S = rng.uniform(0, 100, (30, 30, 3)).astype(np.float32)
    X = rng.uniform(0, 100, (20, 20, 3)).astype(np.float32)
    rows = cols = patch_grid(20, 5, 3)
    first = nearest_patches(X, S, rows, cols, 5, seed=9)[0]
    again = nearest_patches(X, S, rows, cols, 5, seed=9)[0]
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="outside"):
        nearest_patches(X, S, rows + 1, cols, 5)
    with pytest.raises(ValueError, match="smaller than a patch"):
        nearest_patches(X, S[:4], rows, cols, 5)


def test_carried_field_keeps_matches_and_scales_them() -> None:
    rows, cols = patch_grid(20, 5, 3), patch_grid(24, 5, 3)
    field = np.stack(np.meshgrid(rows + 2, cols + 1, indexing="ij"), axis=-1).astype(np.int32)
    same = carry_field(field, (rows, cols), 5, (rows, cols), 5)
    np.testing.assert_array_equal(same, field)
    # Twice the size: each new patch takes the match of the old patch nearest its centre,
    # moved by the offset between the centres; the field's shift (+2, +1) doubles.
    big_rows, big_cols = patch_grid(40, 5, 5), patch_grid(48, 5, 5)
    doubled = carry_field(field, (rows, cols), 5, (big_rows, big_cols), 5, scale=2.0)
    assert doubled.shape == (len(big_rows), len(big_cols), 2)
    np.testing.assert_allclose(
        doubled[..., 0], np.broadcast_to(big_rows[:, None] + 4, doubled.shape[:2]), atol=1
    )
    np.testing.assert_allclose(
        doubled[..., 1], np.broadcast_to(big_cols[None, :] + 2, doubled.shape[:2]), atol=1
    )


# --- aggregation --------------------------------------------------------------------------


def test_aggregating_an_images_own_patches_gives_the_image_back() -> None:
    rng = np.random.default_rng(5)
    S = rng.uniform(0, 100, (24, 28, 3)).astype(np.float32)
    rows, cols = patch_grid(24, 6, 2), patch_grid(28, 6, 2)
    field = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).astype(np.int32)
    start = np.zeros_like(S)
    for power in (2.0, 0.8):
        out = aggregate_patches(start, S, rows, cols, 6, field, robust_power=power)
        np.testing.assert_allclose(out, S, atol=1e-3)


def test_plain_aggregation_is_the_windowed_mean_of_overlapping_patches() -> None:
    rng = np.random.default_rng(6)
    S = rng.uniform(0, 100, (30, 30, 3)).astype(np.float32)
    rows, cols = patch_grid(14, 5, 3), patch_grid(17, 5, 3)
    field = rng.integers(0, 26, (len(rows), len(cols), 2)).astype(np.int32)
    window = aggregation_window(5)
    total = np.zeros((14, 17, 3))
    weight = np.zeros((14, 17, 1))
    for i, y in enumerate(rows):  # reference implementation, patch by patch
        for j, x in enumerate(cols):
            sy, sx = field[i, j]
            total[y : y + 5, x : x + 5] += window[..., None] * S[sy : sy + 5, sx : sx + 5]
            weight[y : y + 5, x : x + 5] += window[..., None]
    expected = total / weight
    # r = 2: every patch weighs the same whatever its residual; one pass is the answer.
    out = aggregate_patches(
        np.zeros((14, 17, 3), np.float32), S, rows, cols, 5, field, robust_power=2.0
    )
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_robust_aggregation_resists_an_outlier_patch() -> None:
    # Three patches cover the middle pixels: two agree (value 10), one is an outlier (90).
    S = np.full((6, 30, 1), 10.0, np.float32)
    S[:, 20:26] = 90.0
    rows = np.array([0], np.int64)
    cols = np.array([0, 2, 4], np.int64)
    field = np.array([[[0, 0], [0, 6], [0, 20]]], np.int32)  # the third is the outlier
    start = np.full((6, 10, 1), 10.0, np.float32)
    uniform = np.ones((6, 6), np.float32)
    mean = aggregate_patches(start, S, rows, cols, 6, field, robust_power=2.0, window=uniform)
    robust = aggregate_patches(start, S, rows, cols, 6, field, robust_power=0.8, window=uniform)
    middle = (slice(None), slice(4, 6))
    assert mean[middle].mean() == pytest.approx((10 + 10 + 90) / 3, rel=1e-4)
    assert robust[middle].mean() < mean[middle].mean() - 10  # pulled towards the majority
    assert robust[middle].mean() > 10  # the outlier still counts a little


# --- fusion weights ----------------------------------------------------------------------


def test_fusion_weights_follow_strength_edges_and_faces() -> None:
    edges = np.array([[0.0, 0.5, 1.0, 0.0]], np.float32)
    face = np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)
    full = fusion_weights(edges, face, 1.0)
    assert full[0, 0] == 0.0  # flat, full strength: all synthesis
    assert 0 < full[0, 1] < full[0, 2]  # stronger edges keep more content
    assert full[0, 3] >= FUSION_FACE  # faces: content only
    weaker = fusion_weights(edges, face, 0.3)
    assert np.all(weaker[0, :3] > full[0, :3])  # less strength, more content everywhere
    stronger = fusion_weights(edges, face, 1.5)
    assert np.all(stronger <= full) and np.all(stronger >= 0)
    # The content share W / (1 + W) of a fused pixel: 1 in faces, 0 on flat at s = 1.
    share = full / (1 + full)
    assert share[0, 3] > 0.999 and share[0, 0] == 0.0


# --- the artistic-reference detector -----------------------------------------------------


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "grace_hopper"])
def test_photographs_are_not_artistic(photo: str) -> None:
    image = grace_hopper() if photo == "grace_hopper" else getattr(skimage.data, photo)()
    assert artistic_strength(image) == 0.0


@pytest.mark.parametrize("painting", ["brush strokes", "halftone"])
def test_paintings_and_prints_are_artistic(painting: str) -> None:
    image = brush_painting() if painting == "brush strokes" else halftone(skimage.data.coffee())
    assert artistic_strength(image) >= 0.8


def test_detector_reads_marks_not_content() -> None:
    # The same scene as a photograph and as a halftone print: only the print has marks on
    # every surface and marks that do not follow the scene's edges.
    photo, print_ = (
        texture_evidence(skimage.data.coffee()),
        texture_evidence(halftone(skimage.data.coffee())),
    )
    assert print_["marks"] > 3 * photo["marks"]
    assert print_["uniformity"] > 2 * photo["uniformity"]
    # A clean photo painted over with marks, then with its light clipped like a photo of
    # a lit scene: clipping counts against it.
    clipped = brush_painting()
    clipped[:60] = 255
    assert artistic_strength(clipped) < artistic_strength(brush_painting())
    with pytest.raises(ValueError):
        artistic_strength(np.zeros((10, 10), np.uint8))


# --- the stage --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def content() -> np.ndarray:
    """A portrait with a plain background, as the stage mostly sees (512 px long side)."""
    portrait = grace_hopper()
    size = (round(portrait.shape[1] * 512 / portrait.shape[0]), 512)
    return cv2.resize(portrait, size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return brush_painting()


def test_strength_zero_and_tiny_references_leave_the_content(
    content: np.ndarray, painting: np.ndarray
) -> None:
    assert transfer_texture(content, painting, strength=0.0) is content
    tiny = painting[:20, :20]
    assert transfer_texture(content, tiny, strength=1.0) is content
    with pytest.raises(ValueError, match="strength"):
        transfer_texture(content, painting, strength=3.0)
    with pytest.raises(ValueError, match="uint8"):
        transfer_texture(content.astype(np.float32), painting, strength=1.0)


@pytest.mark.parametrize("medium", ["brush strokes", "halftone"])
def test_texture_ratio_falls_as_strength_rises(
    content: np.ndarray, painting: np.ndarray, medium: str
) -> None:
    reference = painting if medium == "brush strokes" else halftone(skimage.data.chelsea())
    ratios = [
        texture_ratio(
            transfer_texture(content, reference, strength=s, synthesis_long_side=FAST_SIDE),
            content,
            reference,
        )
        for s in (0.0, 0.25, 0.5, 1.0)
    ]
    assert ratios[0] == pytest.approx(1.0)
    assert all(a > b + 0.02 for a, b in itertools.pairwise(ratios)), ratios
    assert ratios[-1] < 0.7, ratios


def test_same_seed_same_output_other_seed_other_strokes(
    content: np.ndarray, painting: np.ndarray
) -> None:
    def run(seed: int) -> np.ndarray:
        return transfer_texture(
            content, painting, strength=1.0, seed=seed, synthesis_long_side=FAST_SIDE
        )

    first = run(7)
    np.testing.assert_array_equal(first, run(7))
    assert np.abs(first.astype(int) - run(8).astype(int)).mean() > 1.0


def test_nothing_is_synthesised_inside_the_face_mask(
    content: np.ndarray, painting: np.ndarray
) -> None:
    mask = np.zeros(content.shape[:2], np.float32)
    cv2.ellipse(mask, (190, 110), (60, 75), 0, 0, 360, 1.0, -1)
    soft = cv2.GaussianBlur(mask, (0, 0), 6)
    soft[mask > 0] = 1.0  # feathered outwards only: 1 on the whole ellipse
    out = transfer_texture(
        content, painting, strength=1.0, face_mask=soft, synthesis_long_side=FAST_SIDE
    )
    inside = mask > 0
    assert np.abs(out[inside].astype(int) - content[inside].astype(int)).max() <= 1
    outside = soft == 0
    assert np.abs(out[outside].astype(int) - content[outside].astype(int)).mean() > 3
    # A uint8 mask (0..255) means the same.
    out_u8 = transfer_texture(
        content,
        painting,
        strength=1.0,
        face_mask=np.round(soft * 255).astype(np.uint8),
        synthesis_long_side=FAST_SIDE,
    )
    assert np.abs(out_u8[inside].astype(int) - content[inside].astype(int)).max() <= 1


def test_face_protection_mask_covers_detected_faces() -> None:
    portrait = grace_hopper()
    faces = detect_faces(portrait)
    assert faces
    mask = face_protection_mask(faces, portrait.shape, (portrait.shape[1], portrait.shape[0]))
    assert mask.shape == portrait.shape[:2] and mask.dtype == np.float32
    eyes = faces[0].landmarks[:4].mean(0).astype(int)
    assert mask[eyes[1], eyes[0]] == 1.0  # eyes, nose: fully protected
    nose = faces[0].landmarks[4].astype(int)
    assert mask[nose[1], nose[0]] == 1.0
    assert mask[5, 5] == 0.0  # the corner of the frame is paintable
    assert 0.05 < mask.mean() < 0.6
    assert face_protection_mask((), portrait.shape, (64, 48)).shape == (48, 64)


def test_keep_skin_spares_more_skin_around_the_face(painting: np.ndarray) -> None:
    content = skimage.data.astronaut()  # neck and ears show; the suit is skin-coloured too
    faces = detect_faces(content)
    assert faces
    size = (content.shape[1], content.shape[0])
    mask = face_protection_mask(faces, content.shape, size)
    # Skin-coloured pixels (the face's chroma and lightness range) near the face but
    # outside its mask: neck, ears.
    lab = cv2.cvtColor(content.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    face = mask >= 0.99
    low, high = np.percentile(lab[..., 0][face], [5, 95])
    left, top, right, bottom = faces[0].box
    ys, xs = np.mgrid[0 : content.shape[0], 0 : content.shape[1]]
    near = np.hypot(xs - (left + right) / 2, ys - (top + bottom) / 2) < 2 * (right - left)
    skin = (
        (np.linalg.norm(lab[..., 1:] - lab[..., 1:][face].mean(axis=0), axis=-1) < 6)
        & (lab[..., 0] > low)
        & (lab[..., 0] < high)
        & near
        & (mask == 0)
    )
    assert skin.sum() > 300

    def change(keep_skin: bool) -> float:
        out = transfer_texture(
            content,
            painting,
            strength=1.0,
            face_mask=mask,
            keep_skin=keep_skin,
            synthesis_long_side=FAST_SIDE,
        )
        return float(np.abs(out[skin].astype(int) - content[skin].astype(int)).mean())

    assert change(True) < 0.7 * change(False)


def test_held_goal_leaves_the_moving_values_the_rest_of_the_target() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(0.0, 1.0, 20_000).astype(np.float32)
    held = rng.uniform(0.0, 0.3, 3_000).astype(np.float32)  # 30 %: the target's low end
    moving = rng.normal(5.0, 1.0, 7_000).astype(np.float32)
    levels = (np.arange(texture_module.QUANTILES) + 0.5) / texture_module.QUANTILES
    knots = np.quantile(moving, levels).astype(np.float32)
    goal = texture_module._held_goal(knots, held, 0.3, target)
    assert np.all(np.diff(goal) >= 0)
    # The moving values take exactly the part of the target the held ones leave ...
    assert goal[0] == pytest.approx(0.3, abs=0.02) and goal[-1] == pytest.approx(1.0, abs=0.01)
    moved = np.interp(moving, knots, goal)
    combined = np.sort(np.concatenate([held, moved]))
    # ... so held and moved together have the target's distribution.
    quantiles = np.quantile(combined, levels)
    np.testing.assert_allclose(quantiles, np.quantile(target, levels), atol=0.02)


def test_transport_palette_with_held_pixels_gives_the_rest_what_they_lack() -> None:
    """Left half held at colour A, right half free; the palette is half A, half B: the
    free pixels must all become B (A is already shown by the held ones), where a plain
    match would split them between A and B."""
    colour_a, colour_b, start = (60.0, 40.0, 30.0), (60.0, -30.0, -20.0), (50.0, 0.0, 0.0)
    lab = np.empty((64, 128, 3), np.float32)
    lab[:, :64] = colour_a
    lab[:, 64:] = start
    lab += np.random.default_rng(1).normal(0.0, 1.0, lab.shape).astype(np.float32)
    palette = np.array([colour_a, colour_b] * 2000, np.float32)
    moving = np.zeros((64, 128), np.float32)
    moving[:, 64:] = 1.0

    held = transport_palette(lab, palette, moving, seed=0, hold_still=True, blur=1.0)
    np.testing.assert_array_equal(held[:, :64], lab[:, :64])  # held means held
    free = held[4:-4, 72:-4].reshape(-1, 3)  # away from the blur's reach across the seam
    assert np.linalg.norm(free.mean(axis=0) - colour_b) < 4.0, free.mean(axis=0)

    plain = transport_palette(lab, palette, moving, seed=0, blur=1.0)
    to_a = np.linalg.norm(plain[4:-4, 72:-4] - np.float32(colour_a), axis=-1)
    assert 0.3 < float((to_a < 20).mean()) < 0.7  # a plain match splits them


def test_the_reference_palette_pass_moves_the_output_to_the_paintings_colours(
    content: np.ndarray, painting: np.ndarray
) -> None:
    mask = np.zeros(content.shape[:2], np.float32)
    cv2.ellipse(mask, (190, 110), (60, 75), 0, 0, 360, 1.0, -1)

    def run(share: float) -> np.ndarray:
        return transfer_texture(
            content,
            painting,
            strength=1.0,
            face_mask=mask,
            palette_from_reference=share,
            synthesis_long_side=FAST_SIDE,
        )

    styles = [style_ratio(run(share), content, painting) for share in (0.0, 0.5, 1.0)]
    assert styles[0] > styles[1] + 0.05 > styles[2] + 0.1, styles
    # the face is still the content's own pixels
    inside = mask > 0
    assert np.abs(run(1.0)[inside].astype(int) - content[inside].astype(int)).max() <= 1


def test_reference_palette_share_formula() -> None:
    plain = parse_directives(None)
    assert reference_palette_share(1.0, plain, 0.0) == 1.0
    assert reference_palette_share(1.4, plain, 0.0) == 1.0  # "bolder" cannot overshoot
    assert reference_palette_share(0.5, plain, 0.0) == pytest.approx(0.5)
    assert reference_palette_share(1.0, plain, 0.5) == pytest.approx(0.5)
    assert reference_palette_share(1.0, plain, 1.0) == 0.0
    for prompt in (
        "keep the original colors",
        "black and white",
        "keep the lighting",
        "keep the original background",
    ):
        assert reference_palette_share(1.0, parse_directives(prompt), 0.0) == 0.0, prompt


def test_working_resolution_never_exceeds_the_content(
    monkeypatch: pytest.MonkeyPatch, painting: np.ndarray
) -> None:
    seen: list[tuple[int, ...]] = []
    synthesize = texture_module.synthesize

    def spy(content_lab: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        seen.append(content_lab.shape)
        return synthesize(content_lab, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(texture_module, "synthesize", spy)
    small = cv2.resize(skimage.data.coffee(), (240, 160), interpolation=cv2.INTER_AREA)
    out = transfer_texture(small, painting, strength=1.0, synthesis_long_side=640)
    assert out.shape == small.shape
    assert seen == [(160, 240, 3)]


# --- the stage inside ClassicEngine.remix ------------------------------------------------

# Small renders keep the engine tests fast: the working resolution is never above the
# output's (the content is 384 px, the stage synthesises at 384 px).
E2E_SIZE = (384, 384)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """skimage's astronaut (Eileen Collins, NASA, public domain) at 384 x 384."""
    return cv2.resize(skimage.data.astronaut(), E2E_SIZE, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def portrait_faces(portrait: np.ndarray) -> tuple:
    # The raw detector also finds the badge on her suit; her face is the top-most box.
    face = min(detect_faces(portrait), key=lambda found: found.box[1])
    assert face.box[3] < E2E_SIZE[1] / 2
    return (face,)


@pytest.fixture(scope="module")
def painterly() -> np.ndarray:
    """A synthetic painting: skimage's cat as short strokes on canvas."""
    return brush_painting(skimage.data.chelsea(), size=384, seed=3)


def engine_remix(
    content: np.ndarray,
    reference: np.ndarray,
    faces: tuple,
    texture: bool = True,
    **fields: object,
) -> RemixOutput:
    request = RemixRequest(
        content=content, reference=reference, output_size=E2E_SIZE, faces=faces, **fields
    )
    [output] = ClassicEngine(texture=texture).remix(request)  # type: ignore[arg-type]
    return output


@pytest.fixture(scope="module")
def painted(portrait: np.ndarray, portrait_faces: tuple, painterly: np.ndarray) -> RemixOutput:
    return engine_remix(portrait, painterly, portrait_faces, seed=5)


@pytest.fixture(scope="module")
def unpainted(portrait: np.ndarray, portrait_faces: tuple, painterly: np.ndarray) -> RemixOutput:
    return engine_remix(portrait, painterly, portrait_faces, texture=False, seed=5)


def test_remix_with_a_painting_gets_its_texture_and_keeps_the_face(
    portrait: np.ndarray,
    portrait_faces: tuple,
    painterly: np.ndarray,
    painted: RemixOutput,
    unpainted: RemixOutput,
) -> None:
    assert artistic_strength(painterly) >= 0.8
    applied = painted.report.applied["texture"]
    assert applied["strength"] == pytest.approx(applied["artistic"], abs=1e-3)
    assert painted.report.timings["texture"] > 0
    assert unpainted.report.applied["texture"] == "off: texture stage disabled"
    # The stage's marks take the output towards the painting's texture statistics ...
    with_stage = texture_ratio(painted.image, portrait, painterly)
    without_stage = texture_ratio(unpainted.image, portrait, painterly)
    assert with_stage < without_stage - 0.1, (with_stage, without_stage)
    # ... and so does asking for the style at all: style_strength 0 paints nothing.
    zero = engine_remix(portrait, painterly, portrait_faces, style_strength=0.0, seed=5)
    assert zero.report.applied["texture"] == "off: zero strength"
    assert texture_ratio(zero.image, portrait, painterly) > with_stage + 0.1
    # The face is still found, and as close to the input as without the stage.
    with_face = identity_scores(portrait, painted.image, portrait_faces)[0]
    without_face = identity_scores(portrait, unpainted.image, portrait_faces)[0]
    assert with_face.kept
    assert with_face.distance < 0.25
    assert with_face.distance <= without_face.distance + 0.03


def test_remix_texture_is_seeded(
    portrait: np.ndarray, portrait_faces: tuple, painterly: np.ndarray, painted: RemixOutput
) -> None:
    again = engine_remix(portrait, painterly, portrait_faces, seed=5)
    np.testing.assert_array_equal(again.image, painted.image)
    other = engine_remix(portrait, painterly, portrait_faces, seed=6)
    assert np.abs(other.image.astype(int) - painted.image.astype(int)).mean() > 1.0


def test_prompt_strength_and_identity_protection_move_the_texture(
    portrait: np.ndarray, portrait_faces: tuple, painterly: np.ndarray, painted: RemixOutput
) -> None:
    def effect(output: RemixOutput) -> float:
        return texture_ratio(output.image, portrait, painterly)  # lower: more texture

    # At style_strength 0.5, below the strength where flat areas are fully painted:
    # "subtle" < as asked < "stronger", in the strength, in the texture ratio, and in how
    # much the stage itself changes (against the stage-off render of the same prompt).
    strengths, ratios, changes = [], [], []
    for prompt in ("subtle", None, "stronger"):
        fields = {"seed": 5, "prompt": prompt, "style_strength": 0.5}
        output = engine_remix(portrait, painterly, portrait_faces, **fields)
        baseline = engine_remix(portrait, painterly, portrait_faces, texture=False, **fields)
        strengths.append(output.report.applied["texture"]["strength"])
        ratios.append(effect(output))
        changes.append(np.abs(output.image.astype(int) - baseline.image.astype(int)).mean())
    assert strengths[0] < strengths[1] < strengths[2]
    assert ratios[0] > ratios[1] + 0.05 > ratios[2] + 0.05, ratios
    assert changes[0] + 1 < changes[1] < changes[2] - 1, changes

    # Identity protection paints less, and at 1 not at all: the output is then the
    # stage-off render with the same protection.
    half = engine_remix(portrait, painterly, portrait_faces, seed=5, identity_protection=0.5)
    assert half.report.applied["texture"]["strength"] == pytest.approx(
        painted.report.applied["texture"]["strength"] / 2, abs=1e-3
    )

    # (measured as the change the stage makes: at full style strength the texture ratio
    # is near its floor either way)
    def change(output: RemixOutput, protection: float) -> float:
        off = engine_remix(
            portrait, painterly, portrait_faces, texture=False, seed=5,
            identity_protection=protection,
        )  # fmt: skip
        return float(np.abs(output.image.astype(int) - off.image.astype(int)).mean())

    assert change(half, 0.5) < change(painted, 0.0) - 1.0
    full = engine_remix(portrait, painterly, portrait_faces, seed=5, identity_protection=1.0)
    assert full.report.applied["texture"] == "off: full identity protection"
    off = engine_remix(
        portrait, painterly, portrait_faces, texture=False, seed=5, identity_protection=1.0
    )
    np.testing.assert_array_equal(full.image, off.image)


def test_a_photo_reference_leaves_the_output_as_without_the_stage(
    portrait: np.ndarray, portrait_faces: tuple
) -> None:
    photo = skimage.data.coffee()
    assert artistic_strength(photo) == 0.0
    with_stage = engine_remix(portrait, photo, portrait_faces, seed=2, num_outputs=1)
    without = engine_remix(portrait, photo, portrait_faces, texture=False, seed=2)
    assert with_stage.report.applied["texture"].startswith("off: photographic reference")
    np.testing.assert_array_equal(with_stage.image, without.image)


def test_texture_strength_formula() -> None:
    faithful, bolder, gentler = VARIATIONS[:3]
    plain = parse_directives(None)
    assert texture_strength(0.0, 1.0, faithful, plain, 0.0) == 0.0  # photo reference
    assert texture_strength(0.8, 1.0, faithful, plain, 0.0) == pytest.approx(0.8)
    assert texture_strength(0.8, 0.5, faithful, plain, 0.0) == pytest.approx(0.4)
    assert texture_strength(0.8, 1.0, bolder, plain, 0.0) == pytest.approx(1.0)
    assert texture_strength(0.8, 1.0, gentler, plain, 0.0) == pytest.approx(0.48)
    stronger = parse_directives("much stronger")
    assert texture_strength(1.0, 1.0, bolder, stronger, 0.0) == pytest.approx(
        min(2.0, 1.25 * stronger.strength)
    )
    assert texture_strength(0.8, 1.0, faithful, parse_directives("subtle"), 0.0) < 0.8
    assert texture_strength(0.8, 1.0, faithful, plain, 0.25) == pytest.approx(0.6)
    assert texture_strength(0.8, 1.0, faithful, plain, 1.0) == 0.0
    assert texture_strength(0.8, 1.0, faithful, plain, 3.0) == 0.0  # clamped


def test_a_kept_background_is_not_painted(
    portrait: np.ndarray, portrait_faces: tuple, painterly: np.ndarray, painted: RemixOutput
) -> None:
    kept = engine_remix(
        portrait, painterly, portrait_faces, seed=5, prompt="keep the original background"
    )
    assert "background kept" in kept.report.applied["keep_background"]
    assert kept.report.applied["texture"]["strength"] > 0  # the subject is painted
    corner = (slice(0, 40), slice(0, 40))  # background, top left

    def change(output: RemixOutput) -> float:
        return float(np.abs(output.image[corner].astype(int) - portrait[corner]).mean())

    assert change(kept) < 2.0
    assert change(painted) > 20.0

"""Compiled building blocks of example-based texture synthesis (``texture.py``).

Two kernels, both over a *grid* of square patches of the image being synthesised (the
patches whose top-left corners are at ``rows`` x ``cols``, spaced by a gap smaller than
the patch, as in Elad & Milanfar's style transfer):

- ``nearest_patches``: PatchMatch (Barnes et al. 2009), an approximate nearest-neighbour
  field from every grid patch of X to the patches of an example image S, under the sum
  of squared differences. Random initialisation, then alternating scans that try the
  grid neighbours' matches shifted by the grid step (propagation) and random candidates
  at halving radii around the current best (random search).
- ``aggregate_patches``: the robust aggregation step: the image whose overlapping grid
  patches are closest, in the sum of ``||R_ij X - z_ij|| ** r`` with r < 2, to the matched
  example patches z_ij. Solved by iteratively reweighted least squares: each pixel is the
  weighted mean of the example pixels that cover it, weighted by ``||R_ij X - z_ij|| **
  (r - 2)`` (large for patches that already agree, so one bad match cannot smear a
  stroke) times a spatial window that fades at patch borders (hides seams).

Images are (H, W, C) float32 arrays in any colour space (the caller uses CIELab); patch
distances are sums over the C channels. Grid coordinates are int64 arrays.
"""

from __future__ import annotations

import numba
import numpy as np

# Floor on a patch's mean squared residual before raising it to a negative power, in
# squared colour units (Lab): a patch that matches exactly must not get infinite weight.
_IRLS_FLOOR = 1e-2
# Aggregation window: a Gaussian of sigma = patch * WINDOW_SIGMA, floored at WINDOW_FLOOR.
WINDOW_SIGMA = 1 / 3
WINDOW_FLOOR = 0.05


def _check_grid(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> None:
    # The kernels do not check bounds: a grid patch outside the image would read garbage.
    if len(rows) == 0 or len(cols) == 0:
        raise ValueError("the patch grid is empty")
    if rows.min() < 0 or cols.min() < 0:
        raise ValueError("patch grid corners must be >= 0")
    if rows.max() + patch > image.shape[0] or cols.max() + patch > image.shape[1]:
        raise ValueError(f"grid patches of {patch} px reach outside the {image.shape} image")


def patch_grid(length: int, patch: int, gap: int) -> np.ndarray:
    """Top-left coordinates along one axis: 0, gap, 2*gap, ... and always ``length - patch``,
    so the grid covers every pixel. (K,) int64; ``patch <= length`` and ``gap <= patch``."""
    if patch > length:
        raise ValueError(f"patch {patch} is larger than the image side {length}")
    if not 1 <= gap <= patch:
        raise ValueError(f"gap must be in 1..patch ({patch}), got {gap}")
    starts = np.arange(0, length - patch + 1, gap, dtype=np.int64)
    if starts[-1] != length - patch:
        starts = np.append(starts, length - patch)
    return starts


def carry_field(
    field: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    patch: int,
    new_rows: tuple[np.ndarray, np.ndarray],
    new_patch: int,
    scale: float = 1.0,
) -> np.ndarray:
    """A field found on one grid, carried to another grid as a starting point.

    field: (gh, gw, 2) int32 matches of the grid ``rows`` = (row corners, column corners)
    with patches of ``patch`` px. new_rows, new_patch: the new grid. scale: how much larger
    the new images (and example) are (2 when moving to the next pyramid level).
    Each new patch takes the match of the old patch whose centre is nearest its own,
    shifted by the offset between the two centres, all in the new scale.
    Returns (len(new_rows[0]), len(new_rows[1]), 2) int32 (not clipped: PatchMatch clips).
    """
    carried = []
    for axis in range(2):
        old_centres = rows[axis] + patch / 2.0
        new_centres = (new_rows[axis] + new_patch / 2.0) / scale  # in old units
        nearest = np.abs(new_centres[:, None] - old_centres[None, :]).argmin(axis=1)
        carried.append((nearest, new_centres - old_centres[nearest]))
    (row_index, row_shift), (col_index, col_shift) = carried
    old = field[row_index][:, col_index].astype(np.float64)  # (gh', gw', 2)
    y = (old[..., 0] + patch / 2.0 + row_shift[:, None]) * scale - new_patch / 2.0
    x = (old[..., 1] + patch / 2.0 + col_shift[None, :]) * scale - new_patch / 2.0
    return np.stack([np.rint(y), np.rint(x)], axis=-1).astype(np.int32)


@numba.njit(cache=True, inline="always")
def _distance(X, S, y, x, sy, sx, n, limit):  # fmt: skip
    # Sum of squared differences; stops after the row where it passes ``limit`` (the
    # current best), since the caller only needs to know it lost.
    total = 0.0
    for dy in range(n):
        for dx in range(n):
            for c in range(X.shape[2]):
                diff = X[y + dy, x + dx, c] - S[sy + dy, sx + dx, c]
                total += diff * diff
        if total >= limit:
            return total
    return total


@numba.njit(cache=True)
def _nearest_patches(X, S, rows, cols, n, nnf, iterations, seed):  # fmt: skip
    np.random.seed(seed)
    max_y = S.shape[0] - n
    max_x = S.shape[1] - n
    gh, gw = rows.shape[0], cols.shape[0]
    dist = np.empty((gh, gw), np.float32)
    for i in range(gh):
        for j in range(gw):
            sy = min(max(nnf[i, j, 0], 0), max_y)
            sx = min(max(nnf[i, j, 1], 0), max_x)
            nnf[i, j, 0] = sy
            nnf[i, j, 1] = sx
            dist[i, j] = _distance(X, S, rows[i], cols[j], sy, sx, n, np.inf)
    radius0 = max(max_y, max_x) + 1
    for it in range(iterations):
        forward = it % 2 == 0
        step = 1 if forward else -1
        i_range = range(gh) if forward else range(gh - 1, -1, -1)
        for i in i_range:
            j_range = range(gw) if forward else range(gw - 1, -1, -1)
            for j in j_range:
                y, x = rows[i], cols[j]
                best_y, best_x, best = nnf[i, j, 0], nnf[i, j, 1], dist[i, j]
                # Propagation: the previous neighbours' matches, moved by the grid step.
                pi = i - step
                if 0 <= pi < gh:
                    cy = min(max(nnf[pi, j, 0] + y - rows[pi], 0), max_y)
                    cx = nnf[pi, j, 1]
                    d = _distance(X, S, y, x, cy, cx, n, best)
                    if d < best:
                        best_y, best_x, best = cy, cx, d
                pj = j - step
                if 0 <= pj < gw:
                    cy = nnf[i, pj, 0]
                    cx = min(max(nnf[i, pj, 1] + x - cols[pj], 0), max_x)
                    d = _distance(X, S, y, x, cy, cx, n, best)
                    if d < best:
                        best_y, best_x, best = cy, cx, d
                # Random search around the best match at halving radii.
                radius = radius0
                while radius >= 1:
                    cy = min(max(best_y + np.random.randint(-radius, radius + 1), 0), max_y)
                    cx = min(max(best_x + np.random.randint(-radius, radius + 1), 0), max_x)
                    d = _distance(X, S, y, x, cy, cx, n, best)
                    if d < best:
                        best_y, best_x, best = cy, cx, d
                    radius //= 2
                nnf[i, j, 0], nnf[i, j, 1], dist[i, j] = best_y, best_x, best
    return nnf, dist


def nearest_patches(
    X: np.ndarray,
    S: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    patch: int,
    *,
    iterations: int = 4,
    seed: int = 0,
    initial: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate nearest example patch for every grid patch of ``X`` (PatchMatch).

    X: (H, W, C) float32 image being synthesised; S: (Hs, Ws, C) float32 example, both
        at least ``patch`` pixels on each side.
    rows, cols: (gh,), (gw,) int64 top-left corners of the grid patches in X
        (``patch_grid``).
    initial: (gh, gw, 2) int32 (y, x) example corners to start from (e.g. the previous
        iteration's field); None starts from uniformly random corners drawn from ``seed``.
    Returns (nnf, distances): (gh, gw, 2) int32 top-left (y, x) of the matched patch in
    S, and (gh, gw) float32 sums of squared differences over the patch and channels.
    Deterministic for a given seed.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    S = np.ascontiguousarray(S, dtype=np.float32)
    if X.ndim != 3 or S.ndim != 3 or X.shape[2] != S.shape[2]:
        raise ValueError(f"X and S must be (H, W, C) with the same C, got {X.shape}, {S.shape}")
    if min(S.shape[:2]) < patch:
        raise ValueError(f"the example ({S.shape[1]}x{S.shape[0]}) is smaller than a patch")
    _check_grid(X, rows, cols, patch)
    gh, gw = len(rows), len(cols)
    if initial is not None and np.shape(initial) != (gh, gw, 2):
        raise ValueError(f"initial must be ({gh}, {gw}, 2), got {np.shape(initial)}")
    if initial is None:
        rng = np.random.default_rng(seed)
        nnf = np.stack(
            [
                rng.integers(0, S.shape[0] - patch + 1, size=(gh, gw)),
                rng.integers(0, S.shape[1] - patch + 1, size=(gh, gw)),
            ],
            axis=-1,
        ).astype(np.int32)
    else:
        nnf = np.array(initial, dtype=np.int32, copy=True)
    return _nearest_patches(
        X, S, rows.astype(np.int64), cols.astype(np.int64), patch, nnf, iterations, seed
    )


@numba.njit(cache=True)
def _aggregate(X, S, rows, cols, n, nnf, window, power, iterations):  # fmt: skip
    H, W, C = X.shape
    estimate = X.copy()
    acc = np.empty((H, W, C), np.float32)
    weights = np.empty((H, W), np.float32)
    exponent = (power - 2.0) / 2.0  # on the squared residual
    for _ in range(iterations):
        acc[:] = 0.0
        weights[:] = 0.0
        for i in range(rows.shape[0]):
            y = rows[i]
            for j in range(cols.shape[0]):
                x = cols[j]
                sy, sx = nnf[i, j, 0], nnf[i, j, 1]
                residual = 0.0
                for dy in range(n):
                    for dx in range(n):
                        for c in range(C):
                            diff = estimate[y + dy, x + dx, c] - S[sy + dy, sx + dx, c]
                            residual += diff * diff
                w_patch = (residual / (n * n) + _IRLS_FLOOR) ** exponent
                for dy in range(n):
                    for dx in range(n):
                        w = w_patch * window[dy, dx]
                        weights[y + dy, x + dx] += w
                        for c in range(C):
                            acc[y + dy, x + dx, c] += w * S[sy + dy, sx + dx, c]
        for y in range(H):
            for x in range(W):
                if weights[y, x] > 0:
                    for c in range(C):
                        estimate[y, x, c] = acc[y, x, c] / weights[y, x]
    return estimate


def aggregation_window(patch: int) -> np.ndarray:
    """(patch, patch) float32 spatial weights: a Gaussian (sigma = patch * WINDOW_SIGMA)
    with a floor of WINDOW_FLOOR at the corners, so seams between overlapping patches
    fade but every covered pixel keeps a non-zero weight."""
    offsets = np.arange(patch, dtype=np.float32) - (patch - 1) / 2
    profile = np.exp(-0.5 * (offsets / (patch * WINDOW_SIGMA)) ** 2)
    return np.maximum(np.outer(profile, profile), WINDOW_FLOOR).astype(np.float32)


def aggregate_patches(
    X: np.ndarray,
    S: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    patch: int,
    nnf: np.ndarray,
    *,
    robust_power: float = 0.8,
    iterations: int = 3,
    window: np.ndarray | None = None,
) -> np.ndarray:
    """Robust aggregation of the matched example patches into one image (IRLS).

    X: (H, W, C) float32 current estimate (starts the IRLS; pixels no grid patch covers
        keep its values). S: (Hs, Ws, C) float32 example. rows, cols, nnf: the grid and the
        field from ``nearest_patches``. robust_power: r in ``||R_ij X - z_ij|| ** r``;
        2 gives the plain (windowed) average of the overlapping patches, smaller values
        let the patches that agree with their neighbours win. window: (patch, patch)
        spatial weights, default ``aggregation_window(patch)``.
    Returns (H, W, C) float32.
    """
    _check_grid(X, rows, cols, patch)
    if nnf.shape != (len(rows), len(cols), 2):
        raise ValueError(f"nnf must be ({len(rows)}, {len(cols)}, 2), got {nnf.shape}")
    if (
        nnf.min() < 0
        or nnf[..., 0].max() + patch > S.shape[0]
        or (nnf[..., 1].max() + patch > S.shape[1])
    ):
        raise ValueError("nnf points outside the example")
    if window is None:
        window = aggregation_window(patch)
    elif window.shape != (patch, patch):
        raise ValueError(f"window must be ({patch}, {patch}), got {window.shape}")
    return _aggregate(
        np.ascontiguousarray(X, dtype=np.float32),
        np.ascontiguousarray(S, dtype=np.float32),
        rows.astype(np.int64),
        cols.astype(np.int64),
        patch,
        np.ascontiguousarray(nnf, dtype=np.int32),
        np.ascontiguousarray(window, dtype=np.float32),
        float(robust_power),
        int(iterations),
    )

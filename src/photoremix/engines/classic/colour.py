"""Global colour model of the classic engine, baked into a 3D LUT.

The model is fitted on analysis thumbnails (a few tens of thousands of pixels) and
evaluated only on the LUT's grid points, never on full-resolution pixels: a LUT is a
per-pixel function, so it cannot move geometry, and applying it is cheap (see ``render``).

Fit, in CIE-Lab (L 0..100, a/b about -128..127):
1. MKL, the Monge-Kantorovich linear map between the two colour Gaussians (Pitié and
   Kokaram 2007): closed form, grain-free, matches mean and covariance.
2. A relaxed iterative distribution transfer residual (IDT, Pitié et al. 2005/2007):
   rotate, match 1-D marginals by quantiles, rotate back. It fixes what a Gaussian cannot
   express (bimodal palettes, skewed tonality).
3. The displacement field on the grid is smoothed (transport-map regularisation), so the
   map amplifies neither noise nor JPEG blocks.

The map's gain on a compact cluster (a dark suit: a few units of chroma, mostly sensor and
JPEG noise) is large, 5-6 in a/b: spreading that cluster over the reference's palette is
the look, but spreading it by its noise gives colour blotches. So the content's chroma in
dark, near-neutral pixels is replaced by its spatial average there (``calm_dark_chroma``),
both where the map is fitted and where it is rendered: the spread then follows the
cluster's large-scale variation and its lightness, not its noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

LUT_SIZE = 49
IDT_ITERATIONS = 10
IDT_QUANTILES = 256
MKL_MIN_VARIANCE = 4.0
MIN_SLOPE, MAX_SLOPE = 0.1, 8.0
# Dark, near-neutral pixels (``dark_neutral_weight``): sRGB luma and YCbCr chroma magnitude
# (full weight, no weight), and the Gaussian sigma of their chroma average as a share of
# the image's long side (a 16-pixel JPEG chroma block of a 1 MP photo is about 1.4 %).
CALM_LUMA = (0.15, 0.3)
CALM_CHROMA = (0.05, 0.1)
CALM_SIGMA = 0.015
# Rec. 601 chroma rows (Cb, Cr) of RGB, and RGB per unit of Cb / Cr, as the renderer uses.
CHROMA_ROWS = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
RGB_PER_CHROMA = np.array([[0.0, -0.344136, 1.772], [1.402, -0.714136, 0.0]], np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) float32 sRGB in [0, 1] -> (..., 3) float32 CIE-Lab (D65)."""
    flat = np.ascontiguousarray(rgb, dtype=np.float32).reshape(-1, 1, 3)
    return cv2.cvtColor(np.clip(flat, 0.0, 1.0), cv2.COLOR_RGB2Lab).reshape(rgb.shape)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) float32 CIE-Lab -> (..., 3) float32 sRGB, not clipped (may leave [0, 1])."""
    flat = np.ascontiguousarray(lab, dtype=np.float32).reshape(-1, 1, 3)
    return cv2.cvtColor(flat, cv2.COLOR_Lab2RGB).reshape(lab.shape)


def dark_neutral_weight(rgb: np.ndarray) -> np.ndarray:
    """(...,) float32 in [0, 1] of (..., 3) sRGB in [0, 1]: 1 for dark, near-neutral
    colours, falling linearly to 0 at luma CALM_LUMA[1] or chroma CALM_CHROMA[1]."""
    rgb = np.asarray(rgb, np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    chroma = np.linalg.norm(rgb @ CHROMA_ROWS.T, axis=-1)
    dark = np.clip((CALM_LUMA[1] - luma) / (CALM_LUMA[1] - CALM_LUMA[0]), 0.0, 1.0)
    neutral = np.clip((CALM_CHROMA[1] - chroma) / (CALM_CHROMA[1] - CALM_CHROMA[0]), 0.0, 1.0)
    return dark * neutral


def dark_chroma_average(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 2) float32 (Cb, Cr): the chroma of an (h, w, 3) sRGB image in [0, 1]
    averaged (Gaussian, sigma CALM_SIGMA of the long side) over its dark, near-neutral
    pixels only (normalised convolution), so a bright neighbour does not tint them; the
    pixel's own chroma where there are none nearby."""
    rgb = np.asarray(rgb, np.float32)
    weight = dark_neutral_weight(rgb)
    chroma = rgb @ CHROMA_ROWS.T
    sigma = max(0.5, CALM_SIGMA * max(rgb.shape[:2]))
    total = cv2.GaussianBlur(weight, (0, 0), sigma)
    weighted = cv2.GaussianBlur(chroma * weight[..., None], (0, 0), sigma)
    average = weighted / np.maximum(total, 1e-6)[..., None]
    return np.where(total[..., None] > 1e-3, average, chroma).astype(np.float32)


def calm_dark_chroma(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 sRGB in [0, 1] with the chroma of dark, near-neutral pixels moved
    to its spatial average there (``dark_chroma_average``), by ``dark_neutral_weight``;
    luma is unchanged. The renderer does the same per pixel."""
    rgb = np.asarray(rgb, np.float32)
    change = dark_chroma_average(rgb) - rgb @ CHROMA_ROWS.T
    return rgb + (dark_neutral_weight(rgb)[..., None] * change) @ RGB_PER_CHROMA


def tetrahedral_corners(coords: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tetrahedral interpolation of (N, 3) grid coordinates in [0, size - 1].

    Returns four (flat node index (N,), weight (N,)) pairs. The cube is split into six
    tetrahedra that all share its main diagonal, so a neutral colour (r = g = b) is
    interpolated from neutral nodes only; trilinear interpolation would mix in all eight
    corners. The renderer implements the same rule.
    """
    base = np.minimum(coords.astype(int), size - 2)
    frac = coords - base
    order = np.argsort(-frac, axis=1, kind="stable")
    f = np.take_along_axis(frac, order, axis=1)
    steps = np.eye(3, dtype=int)[order]  # (N, 3 steps, 3 axes)
    node = base.copy()
    corners = []
    for i, weight in enumerate((1 - f[:, 0], f[:, 0] - f[:, 1], f[:, 1] - f[:, 2], f[:, 2])):
        if i:
            node = node + steps[:, i - 1]
        corners.append((np.ravel_multi_index(node.T, (size, size, size)), weight))
    return corners


@dataclass
class Lut:
    """A 3D LUT behind per-channel 1-D shapers, the layout film pipelines use.

    shaper: (3, SHAPER_SIZE) float32, channel value v in [0, 1] (sampled uniformly) ->
        grid coordinate u in [0, 1]. It follows the content's own distribution, so the grid
        is dense where the content's colours are: a low-contrast image that would fill two
        cells of a uniform grid still gets the whole grid.
    nodes: (S, S, S, 3) float32 RGB input value at each grid node, indexed [r, g, b].
    values: (S, S, S, 3) float32 RGB output at each node.
    """

    shaper: np.ndarray
    nodes: np.ndarray
    values: np.ndarray

    def with_values(self, values: np.ndarray) -> Lut:
        return Lut(self.shaper, self.nodes, values.astype(np.float32))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Reference (NumPy) application to a small (H, W, 3) float image in [0, 1]; the
        renderer does the same at full size."""
        v = np.linspace(0.0, 1.0, self.shaper.shape[1])
        size = self.values.shape[0]
        u = np.stack([np.interp(rgb[..., k], v, self.shaper[k]) for k in range(3)], axis=-1)
        flat_values = self.values.reshape(-1, 3)
        corners = tetrahedral_corners(np.clip(u.reshape(-1, 3), 0, 1) * (size - 1), size)
        out = sum(flat_values[idx] * w[:, None] for idx, w in corners)
        return out.reshape(rgb.shape).astype(np.float32)


SHAPER_SIZE = 1024
# Share of the shaper that is plain identity: keeps some grid resolution for colours the
# content sample missed.
SHAPER_IDENTITY_SHARE = 0.3


def fit_shaper(rgb_samples: np.ndarray) -> np.ndarray:
    """(3, SHAPER_SIZE) float32 monotonic shapers from (N, 3) RGB samples in [0, 1]."""
    v = np.linspace(0.0, 1.0, SHAPER_SIZE)
    shapers = []
    for k in range(3):
        cdf = np.searchsorted(np.sort(rgb_samples[:, k]), v, side="right") / len(rgb_samples)
        shapers.append(SHAPER_IDENTITY_SHARE * v + (1 - SHAPER_IDENTITY_SHARE) * cdf)
    return np.asarray(shapers, dtype=np.float32)


def identity_lut(size: int = LUT_SIZE, shaper: np.ndarray | None = None) -> Lut:
    """A LUT that changes nothing, on a uniform grid or on the grid ``shaper`` implies."""
    v = np.linspace(0.0, 1.0, SHAPER_SIZE, dtype=np.float32)
    if shaper is None:
        shaper = np.stack([v, v, v])
    u = np.linspace(0.0, 1.0, size)
    axes = [np.interp(u, shaper[k], v) for k in range(3)]  # inverse shaper at the nodes
    r, g, b = np.meshgrid(*axes, indexing="ij")
    nodes = np.stack([r, g, b], axis=-1).astype(np.float32)
    return Lut(shaper.astype(np.float32), nodes, nodes.copy())


def mkl_transform(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monge-Kantorovich linear map between the Gaussians of two (N, 3) point clouds.

    Returns (T, offset) such that ``x @ T + offset`` maps source statistics onto target's.
    """
    mu_s, mu_t = source.mean(0), target.mean(0)
    A = np.cov(source, rowvar=False) + np.eye(3) * 1e-3
    B = np.cov(target, rowvar=False) + np.eye(3) * 1e-3
    eig_a, vec_a = np.linalg.eigh(A)
    # Floor the source variances (std >= 2 Lab units): a greyscale or single-hue content has
    # ~zero chroma variance, and the map would multiply its JPEG noise into colour noise.
    eig_a = np.maximum(eig_a, MKL_MIN_VARIANCE)
    sqrt_a = vec_a @ np.diag(np.sqrt(eig_a)) @ vec_a.T
    inv_sqrt_a = vec_a @ np.diag(1 / np.sqrt(eig_a)) @ vec_a.T
    C = sqrt_a @ B @ sqrt_a
    eig_c, vec_c = np.linalg.eigh(C)
    sqrt_c = vec_c @ np.diag(np.sqrt(np.maximum(eig_c, 0))) @ vec_c.T
    T = inv_sqrt_a @ sqrt_c @ inv_sqrt_a  # symmetric; x @ T == T @ x
    return T, mu_t - mu_s @ T


def _rotations(count: int) -> list[np.ndarray]:
    # Fixed, well-spread orthonormal bases: the map must not depend on the request seed,
    # so that variation 0 of every request is the same faithful transfer.
    rng = np.random.default_rng(20240917)
    bases = []
    for _ in range(count):
        q, r = np.linalg.qr(rng.standard_normal((3, 3)))
        bases.append(q * np.sign(np.diag(r)))
    return bases


def _quantiles(values: np.ndarray) -> np.ndarray:
    # A full sort and direct indexing is several times faster than np.quantile here.
    ordered = np.sort(values)
    index = ((np.arange(IDT_QUANTILES) + 0.5) / IDT_QUANTILES * (ordered.size - 1)).astype(int)
    return ordered[index]


def _marginal_map(source_1d: np.ndarray, target_1d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _quantiles(source_1d), _quantiles(target_1d)
    # Limit the slope of the 1-D map: a steep map stretches a narrow range of the content
    # (and its noise and JPEG blocks) into blotches, the "graininess" IDT is known for.
    steps = np.clip(np.diff(ys), np.diff(xs) * MIN_SLOPE, np.diff(xs) * MAX_SLOPE)
    ys = np.concatenate([[0.0], np.cumsum(steps)])
    ys += np.median(_quantiles(target_1d)) - np.median(ys)
    # np.interp needs strictly increasing x; ties in flat regions are nudged apart.
    xs = xs + np.arange(IDT_QUANTILES) * 1e-6
    return xs, ys


def _displacement(projected: np.ndarray, maps: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    # Interpolate the displacement, not the mapped value: beyond the sampled range the
    # displacement stays constant (slope-1 extrapolation). Mapping to the clamped end value
    # instead would collapse every LUT cell outside the data onto one colour.
    return np.stack(
        [np.interp(projected[:, i], xs, ys - xs) for i, (xs, ys) in enumerate(maps)], axis=1
    )


@dataclass
class ColourModel:
    """Fitted map, usable on any (N, 3) Lab points: MKL then IDT residual steps."""

    T: np.ndarray
    offset: np.ndarray
    steps: list[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]]
    relaxation: float
    fitted: np.ndarray | None = None  # (N, 3) the fitting samples after the map, Lab

    def apply(self, lab: np.ndarray) -> np.ndarray:
        x = lab.astype(np.float64) @ self.T + self.offset
        for basis, maps in self.steps:
            projected = x @ basis
            x = x + self.relaxation * _displacement(projected, maps) @ basis.T
        return x


def fit_colour_model(
    source_lab: np.ndarray,
    target_lab: np.ndarray,
    iterations: int = IDT_ITERATIONS,
    relaxation: float = 0.8,
) -> ColourModel:
    """Fit MKL + IDT from (N, 3) source Lab samples to (M, 3) target Lab samples."""
    T, offset = mkl_transform(source_lab, target_lab)
    model = ColourModel(T=T, offset=offset, steps=[], relaxation=relaxation)
    x = source_lab.astype(np.float64) @ T + offset
    for basis in _rotations(iterations):
        projected, target_projected = x @ basis, target_lab @ basis
        maps = [_marginal_map(projected[:, i], target_projected[:, i]) for i in range(3)]
        x = x + relaxation * _displacement(projected, maps) @ basis.T
        model.steps.append((basis, maps))
    model.fitted = x
    return model


# Splatted weight at which a node counts as "holding content colours".
CONFIDENT_WEIGHT = 0.5
REFINE_STEPS = 4
REFINE_MIN_WEIGHT = 2.0


def _splat(
    corners: list[tuple[np.ndarray, np.ndarray]], values: np.ndarray, size: int
) -> np.ndarray:
    """(C, size^3) splat of (N, C) sample values onto the grid (the adjoint of interpolation)."""
    out = np.zeros((values.shape[1], size**3))
    for idx, w in corners:
        for k in range(values.shape[1]):
            out[k] += np.bincount(idx, w * values[:, k], size**3)
    return out


def bake_lut(
    rgb_samples: np.ndarray, mapped_rgb: np.ndarray, shaper: np.ndarray, size: int = LUT_SIZE
) -> Lut:
    """Bake a colour map, known at the content's own colours, into a LUT.

    Evaluating a model at the grid nodes would extrapolate it far outside the data (a
    greyscale photo has no samples off the grey axis). Instead each sample's displacement
    (mapped - original RGB) is splatted onto the grid with tetrahedral weights; nodes
    without content nearby take the displacement of the nearest node that has some. The
    result is smooth (regularised transport) and close to exact where the content's
    colours are.

    rgb_samples: (N, 3) float32 content RGB in [0, 1] (after the tone stage).
    mapped_rgb: (N, 3) float32 where the map sends them (any range; clipped to -0.25..1.25).
    """
    lut = identity_lut(size, shaper)
    displacement = np.clip(mapped_rgb, -0.25, 1.25) - rgb_samples

    v = np.linspace(0.0, 1.0, SHAPER_SIZE)
    u = np.stack([np.interp(rgb_samples[:, k], v, shaper[k]) for k in range(3)], axis=1)
    # (flat node index, weight) of each sample at each of its tetrahedron's corners
    corners = tetrahedral_corners(np.clip(u, 0, 1) * (size - 1), size)
    weights = _splat(corners, np.ones((len(rgb_samples), 1)), size)[0].reshape((size,) * 3)
    sums = _splat(corners, displacement, size).reshape((3, size, size, size))

    # Near the data: a light normalised convolution (sigma 0.5 cell) of the splats.
    density = gaussian_filter(weights, 0.5, mode="nearest")
    near = np.stack([gaussian_filter(sums[k], 0.5, mode="nearest") for k in range(3)])
    near /= np.maximum(density, 1e-12)
    alpha = np.clip(density / CONFIDENT_WEIGHT, 0, 1)
    confident = density > CONFIDENT_WEIGHT
    if not confident.any():
        confident = density >= density.max()
    nearest = tuple(distance_transform_edt(~confident, return_distances=False, return_indices=True))

    def fill(field: np.ndarray) -> np.ndarray:
        # Away from the data: the displacement of the nearest confident node, smoothed.
        far = np.stack([gaussian_filter(field[k][nearest], 1.5, mode="nearest") for k in range(3)])
        return alpha * field + (1 - alpha) * far

    # Splatting is the adjoint of interpolation, not its inverse: it blurs. A few
    # Landweber steps (re-splat what interpolation still misses) make the LUT reproduce
    # its samples in the least-squares sense where they are dense; the fill then follows.
    field = fill(near).reshape(3, -1)
    support = weights.ravel() > REFINE_MIN_WEIGHT
    for _ in range(REFINE_STEPS):
        predicted = sum(field[:, idx] * w for idx, w in corners).T
        correction = _splat(corners, displacement - predicted, size)
        field[:, support] += correction[:, support] / weights.ravel()[support]
    filled = fill(field.reshape(3, size, size, size))
    values = lut.nodes + np.moveaxis(filled, 0, -1).astype(np.float32)
    return lut.with_values(np.clip(values, -0.25, 1.25))


def sample_pixels(image: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) random pixels (without replacement when possible) of an (H, W, 3) array."""
    flat = image.reshape(-1, 3)
    if flat.shape[0] <= count:
        return flat
    index = np.random.default_rng(seed).choice(flat.shape[0], size=count, replace=False)
    return flat[index]

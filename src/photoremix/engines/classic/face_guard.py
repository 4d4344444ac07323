"""The face guard: each face takes the look's average colour change rigidly.

dlib's identity embedding barely moves under a global colour change of a face (a blue
cast of 15 Lab units, a 30 degree hue turn, chroma halved or lightness +8: distances
0.03-0.07 on the portrait cases) but moves a lot under per-pixel changes that alter the
face's internal contrast (a colour LUT clamped pixel by pixel to 3 degrees / 8 %: 0.13
median, 0.26 worst; the same faces left untouched: 0.07). So inside each face the output
is the original pixel through one affine YCbCr map per face,

    Y' = a Y + b,    (Cb', Cr') = s (Cb, Cr) + d,

fitted (weighted least squares) to what the look does to that face's pixels and then
limited (``FaceLimits``): the face follows the look's mean lightness and colour cast, and
keeps its own detail. YCbCr values are sRGB-encoded, Y in 0..1, Cb/Cr in -0.5..0.5.

Where: ``guard_masks``, each face's forehead-to-chin ellipse kept where it holds the face
or skin-coloured pixels, so hair and a background inside the ellipse take the look.

Masks are float32 in [0, 1]; images are float32 sRGB in [0, 1] or uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from photoremix.vision.faces import Face

# Guard ellipse half-axes as a share of the detector box (width, height). dlib's identity
# embedding looks at an aligned chip that reaches past the box, so the guard must too.
FACE_MASK_AXES = (0.62, 0.75)
# Feather (Gaussian sigma) of the guard ellipses, as a share of the image's long side.
FACE_MASK_FEATHER = 0.02
# Skin model of the guard's outer part (texture.skin_likelihood's spread in standard
# deviations and reach in face diameters): looser than the texture stage's.
GUARD_SKIN = (2.0, 1.0)
# Rec. 601 RGB -> YCbCr (rows Y, Cb, Cr), as the renderer uses.
YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    np.float32,
)
RGB = np.linalg.inv(YCBCR).astype(np.float32)


@dataclass(frozen=True)
class FaceLimits:
    """How far a face's affine map may go.

    gain: range of the luma slope a (local contrast). luma_shift: largest change of the
    face's mean luma. chroma_scale: range of s. chroma_shift: largest change of the
    face's mean (Cb, Cr) (Euclidean).
    """

    gain: tuple[float, float]
    luma_shift: float
    chroma_scale: tuple[float, float]
    chroma_shift: float

    def scaled(self, leeway: float) -> FaceLimits:
        """These limits with every allowed deviation from "unchanged" times ``leeway``."""
        return FaceLimits(
            gain=(1 - (1 - self.gain[0]) * leeway, 1 + (self.gain[1] - 1) * leeway),
            luma_shift=self.luma_shift * leeway,
            chroma_scale=(
                1 - (1 - self.chroma_scale[0]) * leeway,
                1 + (self.chroma_scale[1] - 1) * leeway,
            ),
            chroma_shift=self.chroma_shift * leeway,
        )


# Measured on the 16 portrait cases of the evaluation set (docs/classic-engine.md): at
# these limits portrait identity 0.074 median, 0.155 worst.
GUARD = FaceLimits(gain=(0.9, 1.1), luma_shift=0.06, chroma_scale=(0.7, 1.2), chroma_shift=0.06)
# "keep the skin tones": half the leeway.
GUARD_KEEP_SKIN = GUARD.scaled(0.5)
IDENTITY = np.array([1.0, 0.0, 1.0, 0.0, 0.0], np.float32)  # a, b, s, d_cb, d_cr


def face_masks(
    faces: tuple[Face, ...], source_shape: tuple[int, ...], size: tuple[int, int]
) -> np.ndarray:
    """(N, H, W) float32 soft masks, one per face (forehead to chin), at ``size`` (W, H);
    face boxes are in the coordinates of an image of ``source_shape``."""
    width, height = size
    masks = np.zeros((len(faces), height, width), np.float32)
    fx, fy = width / source_shape[1], height / source_shape[0]
    sigma = max(0.5, FACE_MASK_FEATHER * max(width, height))
    for mask, face in zip(masks, faces, strict=True):
        left, top, right, bottom = face.box
        cx, cy = (left + right) / 2 * fx, (top + bottom) / 2 * fy
        ax = (right - left) * FACE_MASK_AXES[0] * fx
        ay = (bottom - top) * FACE_MASK_AXES[1] * fy
        # dlib's HOG box runs from the brows to the chin: shift up for the forehead.
        centre = (round(cx), round(cy - 0.12 * ay))
        cv2.ellipse(mask, centre, (max(1, round(ax)), max(1, round(ay))), 0, 0, 360, 1.0, -1)
        cv2.GaussianBlur(mask, (0, 0), sigma, dst=mask)
    return masks


def guard_masks(
    faces: tuple[Face, ...], source_shape: tuple[int, ...], image: np.ndarray
) -> np.ndarray:
    """(N, h, w) float32 guard masks, one per face, at the size of ``image`` ((h, w, 3)
    uint8, the content at some scale; boxes in an image of ``source_shape``).

    Each face's ellipse (``face_masks``), kept only where it holds the face itself or
    skin-coloured pixels: the face from brows to chin (``texture.face_protection_mask``)
    always, the rest of the ellipse (forehead, ears, but also hair and background) as far
    as its colour is the face's (``texture.skin_likelihood``). A background inside the
    ellipse then takes the look like the rest of the image, instead of a pale halo of
    original colour around the head.
    """
    from photoremix.engines.classic import texture  # texture's masks; no import cycle

    height, width = image.shape[:2]
    ellipses = face_masks(faces, source_shape, (width, height))
    if not faces:
        return ellipses
    inner = np.stack(
        [texture.face_protection_mask((face,), source_shape, (width, height)) for face in faces]
    )
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    skin = texture.skin_likelihood(lab, inner.max(axis=0), *GUARD_SKIN)
    skin = cv2.GaussianBlur(skin, (0, 0), max(0.5, FACE_MASK_FEATHER * max(width, height) / 4))
    return np.maximum(inner, ellipses * skin[None])


def to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] -> (..., 3) float32 Y, Cb, Cr."""
    return np.asarray(rgb, np.float32) @ YCBCR.T


def fit_face_map(
    original: np.ndarray, look: np.ndarray, weights: np.ndarray, limits: FaceLimits
) -> np.ndarray:
    """(5,) float32 (a, b, s, d_cb, d_cr): the affine YCbCr map closest (weighted least
    squares) to ``original`` -> ``look``, then limited by ``limits``.

    original, look: (N, 3) float sRGB in [0, 1], the same pixels before and after the
    look; weights: (N,) >= 0 (the face mask). The slope and scale are clamped first, then
    the change of the face's mean is: a face always keeps its own detail.
    """
    w = np.asarray(weights, np.float64)
    if w.sum() <= 1e-6:
        return IDENTITY.copy()
    w = w / w.sum()
    before, after = to_ycbcr(original).astype(np.float64), to_ycbcr(look).astype(np.float64)
    mean_before, mean_after = w @ before, w @ after
    centred_before, centred_after = before - mean_before, after - mean_after

    luma_variance = w @ centred_before[:, 0] ** 2
    a = (w @ (centred_before[:, 0] * centred_after[:, 0])) / max(luma_variance, 1e-8)
    a = float(np.clip(a, *limits.gain))
    luma_shift = float(
        np.clip(mean_after[0] - mean_before[0], -limits.luma_shift, limits.luma_shift)
    )
    b = mean_before[0] + luma_shift - a * mean_before[0]

    chroma_variance = w @ (centred_before[:, 1:] ** 2).sum(axis=1)
    s = (w @ (centred_before[:, 1:] * centred_after[:, 1:]).sum(axis=1)) / max(
        chroma_variance, 1e-8
    )
    s = float(np.clip(s, *limits.chroma_scale))
    chroma_shift = mean_after[1:] - mean_before[1:]
    length = float(np.hypot(*chroma_shift))
    if length > limits.chroma_shift:
        chroma_shift *= limits.chroma_shift / length
    d = mean_before[1:] + chroma_shift - s * mean_before[1:]
    return np.array([a, b, s, d[0], d[1]], np.float32)


def apply_face_map(rgb: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] through the affine YCbCr map ``params`` (not clipped)."""
    ycbcr = to_ycbcr(rgb)
    a, b, s, d_cb, d_cr = (float(v) for v in params)
    mapped = np.empty_like(ycbcr)
    mapped[..., 0] = a * ycbcr[..., 0] + b
    mapped[..., 1] = s * ycbcr[..., 1] + d_cb
    mapped[..., 2] = s * ycbcr[..., 2] + d_cr
    return mapped @ RGB.T


def face_parameter_maps(masks: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(H, W, 5) float32: at each pixel the map of the face whose mask is largest there,
    the identity map where no mask reaches. masks: (N, H, W); params: (N, 5)."""
    height, width = masks.shape[1:]
    maps = np.broadcast_to(IDENTITY, (height, width, 5)).copy()
    if len(masks):
        owner = masks.argmax(axis=0)
        covered = masks.max(axis=0) > 0
        maps[covered] = np.asarray(params, np.float32)[owner[covered]]
    return maps

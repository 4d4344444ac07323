"""The classic engine: photographic look transfer on the CPU, without neural weights.

Pipeline (docs/classic-engine.md has the reasoning):
  fit on thumbnails (``look.fit_look``): tone, colour LUT, grain, vignette
  -> per variation: derive the LUT and render parameters (``variations``, directives),
     and fit the locally affine lightness maps (``lightness``) on a small preview render
  -> render (``render.render``): the look at the content's resolution, then grain and
     dither at the output size.
Every detected face gets a guard that limits hue rotation, chroma change and luma gain.
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from photoremix.engines.base import ImageReport, ProgressCallback, RemixOutput, RemixRequest
from photoremix.engines.classic import lightness, tone
from photoremix.engines.classic import vignette as vignette_module
from photoremix.engines.classic.colour import rgb_to_lab
from photoremix.engines.classic.directives import Directives, parse_directives
from photoremix.engines.classic.grain import grain_template
from photoremix.engines.classic.look import Look, fit_look
from photoremix.engines.classic.render import GRAIN_TEMPLATE_SIZE, RenderPlan, render
from photoremix.engines.classic.variations import Variation, variation_for
from photoremix.vision.faces import Face, detect_faces

# Face guard limits: how far colour transfer may move a face's pixels from the original.
# Measured on the 16 portrait cases of the evaluation set: 10 deg / 25 % gave an identity
# distance median of 0.15, 3 deg / 8 % gives 0.10, for the same overall style median.
GUARD = {"hue": np.deg2rad(3.0), "chroma": 0.08, "gain": 0.08}
GUARD_KEEP_SKIN = {"hue": np.deg2rad(1.5), "chroma": 0.04, "gain": 0.05}
# Local-contrast gain inside faces stays near 1: detail is where identity lives.
FACE_DETAIL_GAIN_RANGE = (0.9, 1.1)
# Share of the synthesised grain kept inside faces: grain measurably moves dlib's identity
# embedding, and film grain on skin reads as blemishes sooner than elsewhere.
FACE_GRAIN = 0.3
HIGHLIGHT_KNEE = 0.95
# Guard ellipse half-axes as a share of the detector box (width, height). dlib's identity
# embedding looks at an aligned chip that reaches past the box, so the guard must too.
FACE_MASK_AXES = (0.62, 0.75)


def face_guard_mask(
    faces: tuple[Face, ...], source_shape: tuple[int, ...], size: tuple[int, int]
) -> np.ndarray:
    """(H, W) uint8 soft mask covering each face (forehead to chin) at ``size`` (W, H);
    face boxes are in the coordinates of an image of ``source_shape``.

    Drawn at quarter resolution and feathered there, then upsampled: soft edges need no
    full-resolution precision, and a 4 MP blur would cost more than the whole render.
    """
    width, height = size
    if not faces:
        return np.zeros((1, 1), np.uint8)
    scale = 0.25
    small = np.zeros((max(1, round(height * scale)), max(1, round(width * scale))), np.float32)
    fx = width / source_shape[1] * scale
    fy = height / source_shape[0] * scale
    for face in faces:
        left, top, right, bottom = face.box
        cx, cy = (left + right) / 2 * fx, (top + bottom) / 2 * fy
        # dlib's HOG box runs from the brows to the chin: extend up for the forehead.
        ax = (right - left) * FACE_MASK_AXES[0] * fx
        ay = (bottom - top) * FACE_MASK_AXES[1] * fy
        cv2.ellipse(
            small, (round(cx), round(cy - 0.12 * ay)), (round(ax), round(ay)), 0, 0, 360, 1.0, -1
        )
    feather = max(1.0, 0.08 * max(small.shape))
    small = cv2.GaussianBlur(small, (0, 0), feather / 4)
    full = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(full * 255 + 0.5, 0, 255).astype(np.uint8)


def _with_lightness(plan: RenderPlan, content_small: np.ndarray) -> RenderPlan:
    """``plan`` with its locally affine lightness maps (``lightness``), fitted to what
    ``plan`` makes of ``content_small`` (the content at the coefficient maps' resolution)
    without the steps that follow the lightness step. The vignette moves into the maps:
    it darkens the corners while the whole keeps the look's lightness distribution."""
    preview_plan = dataclasses.replace(
        plan,
        face_mask=np.zeros((1, 1), np.uint8),
        keep_mask=np.full((1, 1), 255, np.uint8),
        vignette=0.0,
        grain_curve=np.zeros_like(plan.grain_curve),
        lightness=None,
    )
    preview = render(content_small, preview_plan).astype(np.float32) / 255.0
    look_lightness = rgb_to_lab(preview)[..., 0]
    target = look_lightness
    if plan.vignette > 0:
        falloff = vignette_module.falloff(preview.shape[:2], plan.vignette)
        target = rgb_to_lab(preview * falloff[..., None])[..., 0]
    maps = lightness.fit_lightness(
        rgb_to_lab(content_small.astype(np.float32) / 255.0)[..., 0], target, look_lightness
    )
    return dataclasses.replace(plan, lightness=maps, vignette=0.0)


def content_at_render_size(image: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """The content at the size the look is rendered at: its own when the output is larger
    (``render`` enlarges the result), else shrunk to the output size."""
    h, w = image.shape[:2]
    if w * h <= output_size[0] * output_size[1]:
        return image
    return cv2.resize(image, output_size, interpolation=cv2.INTER_AREA)


class ClassicEngine:
    """Photographic look transfer: colour LUT, two-scale tone, grain, vignette, face guard."""

    name = "classic"

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        started = time.perf_counter()
        directives = parse_directives(request.prompt)
        faces = request.faces if request.faces is not None else detect_faces(request.content)
        t_detect = time.perf_counter()

        look = fit_look(request.content, request.reference)
        t_fit = time.perf_counter()

        content = content_at_render_size(request.content, request.output_size)
        size = (content.shape[1], content.shape[0])
        content_small = tone.coefficient_image(request.content, request.output_size)
        coef_a, coef_b = tone.coefficient_maps(content_small)
        face_mask = face_guard_mask(faces, request.content.shape, size)
        keep_mask, keep_note = self._keep_mask(request, faces, directives, size)
        t_prepare = time.perf_counter()
        shared = {
            "detect_faces": t_detect - started if request.faces is None else 0.0,
            "fit": t_fit - t_detect,
            "prepare": t_prepare - t_fit,
        }

        base_strength = 1.0 if request.style_strength is None else float(request.style_strength)
        outputs: list[RemixOutput] = []
        for index in range(
            request.variation_offset, request.variation_offset + request.num_outputs
        ):
            t0 = time.perf_counter()
            variation = variation_for(index)
            seed = request.seed + index
            plan, applied = self._plan(
                look,
                variation,
                directives,
                base_strength,
                seed,
                coef_a,
                coef_b,
                face_mask,
                keep_mask,
                request.output_size,
                request.identity_protection,
            )
            plan = _with_lightness(plan, content_small)
            image = render(content, plan, request.output_size)
            applied.update(faces_guarded=len(faces), keep_background=keep_note)
            report = ImageReport(
                engine=self.name,
                seed=seed,
                variation=index,
                variation_description=variation.description,
                applied=applied,
                unhandled_instructions=list(directives.unhandled),
                timings={**shared, "render": time.perf_counter() - t0},
            )
            outputs.append(RemixOutput(image=image, report=report))
            if progress is not None:
                progress(len(outputs), request.num_outputs)
        return outputs

    @staticmethod
    def _keep_mask(
        request: RemixRequest,
        faces: tuple[Face, ...],
        directives: Directives,
        size: tuple[int, int],
    ) -> tuple[np.ndarray, str | None]:
        if not directives.keep_background:
            return np.full((1, 1), 255, np.uint8), None
        from photoremix.vision.segmentation import subject_mask

        result = subject_mask(request.content, faces, size=size)
        if result.method == "none":
            return np.full((1, 1), 255, np.uint8), "no subject found: whole image restyled"
        mask = np.clip(result.mask * 255 + 0.5, 0, 255).astype(np.uint8)
        return mask, (
            f"subject restyled, background kept (mask from {result.method}, "
            f"edge confidence {result.confidence:.2f})"
        )

    @staticmethod
    def _plan(
        look: Look,
        variation: Variation,
        directives: Directives,
        base_strength: float,
        seed: int,
        coef_a: np.ndarray,
        coef_b: np.ndarray,
        face_mask: np.ndarray,
        keep_mask: np.ndarray,
        output_size: tuple[int, int],
        protection: float = 0.0,
    ) -> tuple[RenderPlan, dict]:
        strength = float(
            np.clip(base_strength * variation.strength * directives.strength, 0.0, 1.6)
        )
        lut = look.lut_for(
            strength,
            warmth=variation.warmth + directives.warmth,
            brightness=variation.brightness + directives.brightness,
            contrast=variation.contrast + directives.contrast,
            monochrome=directives.monochrome,
            keep_colours=directives.keep_colours,
            keep_lighting=directives.keep_lighting,
        )
        tone_fit = look.tone.scaled(0.0 if directives.keep_lighting else strength)
        detail_gain = 1.0 + (tone_fit.detail_gain - 1.0) * variation.detail
        face_detail_gain = float(np.clip(detail_gain, *FACE_DETAIL_GAIN_RANGE))

        grain_scale = strength * variation.grain
        if directives.grain is False:
            grain_scale = 0.0
        grain_curve = look.grain.curve * grain_scale
        if directives.grain is True and float(np.median(grain_curve)) < 0.01:
            grain_curve = np.maximum(grain_curve, 0.015)  # asked for grain on a clean reference
        rng = np.random.default_rng(seed)
        if np.any(grain_curve > 0):
            template = grain_template(look.grain, max(output_size), GRAIN_TEMPLATE_SIZE, seed)
        else:  # a clean reference: skip synthesising noise that would be multiplied by 0
            template = np.zeros((1, 1, 3), np.float32)
        vignette = (
            0.0
            if directives.keep_lighting
            else look.vignette * variation.vignette * min(strength, 1.3)
        )
        guard = GUARD_KEEP_SKIN if directives.keep_skin_tones else GUARD
        # Extra protection (a re-render after a face drifted): tighter limits, the face's
        # own detail and less grain; at 1 the guard keeps a quarter of its normal leeway.
        protection = float(np.clip(protection, 0.0, 1.0))
        guard = {name: limit * (1.0 - 0.75 * protection) for name, limit in guard.items()}
        face_detail_gain += (1.0 - face_detail_gain) * protection
        face_grain = FACE_GRAIN * (1.0 - protection)

        plan = RenderPlan(
            shaper=lut.shaper,
            lut=lut.values,
            coef_a=coef_a,
            coef_b=coef_b,
            base_curve=tone_fit.base_curve,
            detail_gain=float(detail_gain),
            face_detail_gain=face_detail_gain,
            face_mask=face_mask,
            keep_mask=keep_mask,
            guard_hue=float(guard["hue"]),
            guard_chroma=float(guard["chroma"]),
            guard_gain=float(guard["gain"]),
            vignette=float(vignette),
            grain=template,
            grain_curve=np.ascontiguousarray(grain_curve, dtype=np.float32),
            face_grain=face_grain,
            grain_chroma=float(look.grain.chroma),
            grain_offset=(
                int(rng.integers(GRAIN_TEMPLATE_SIZE)),
                int(rng.integers(GRAIN_TEMPLATE_SIZE)),
            ),
            knee=HIGHLIGHT_KNEE,
            dither_seed=int(seed & 0x7FFFFFFF),
        )
        applied = {
            "strength": round(strength, 3),
            "colour": f"MKL + relaxed IDT, shaped {lut.values.shape[0]}^3 LUT",
            "lightness": "locally affine",
            "detail_gain": round(float(detail_gain), 3),
            "grain_std": round(float(np.median(grain_curve)) * 255, 2),
            "reference_grain_std": round(look.reference_grain * 255, 2),
            "vignette": round(float(vignette), 3),
            "identity_protection": round(protection, 3),
            "directives": [
                {"clause": m.clause, "settings": dict(m.settings)} for m in directives.matched
            ],
        }
        return plan, applied

"""The classic engine: photographic look transfer on the CPU, without neural weights.

Pipeline (docs/classic-engine.md has the reasoning):
  fit on thumbnails (``look.fit_look``): tone, colour LUT (fitted on the image outside
     the faces, towards the reference's palette minus what the guarded faces will show),
     grain, vignette
  -> per variation: derive the LUT and render parameters (``variations``, directives),
     fit the locally affine lightness maps (``lightness``) and each face's guard map
     (``face_guard``) on a small preview render
  -> render (``render.render``): the look at the content's resolution, then grain and
     dither at the output size
  -> texture (``texture.transfer_texture``), only for references that read as painted,
     printed or drawn (``artistic.artistic_strength`` > 0): the reference's marks
     synthesised onto the render, then everything but the faces moved onto the
     painting's own palette (``reference_palette_share``); faces untouched.
Every detected face gets a guard: inside it the original pixels go through one affine
YCbCr map per face, the look's average change on that face within limits, so the face
keeps its own detail (``face_guard``).
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from photoremix.engines.base import ImageReport, ProgressCallback, RemixOutput, RemixRequest
from photoremix.engines.classic import face_guard, lightness, tone
from photoremix.engines.classic import texture as texture_module
from photoremix.engines.classic import vignette as vignette_module
from photoremix.engines.classic.artistic import artistic_strength
from photoremix.engines.classic.colour import rgb_to_lab
from photoremix.engines.classic.directives import Directives, parse_directives
from photoremix.engines.classic.grain import grain_template
from photoremix.engines.classic.look import Look, fit_look
from photoremix.engines.classic.render import (
    GRAIN_TEMPLATE_SIZE,
    RenderPlan,
    identity_face_maps,
    render,
)
from photoremix.engines.classic.variations import Variation, variation_for
from photoremix.vision.faces import Face, detect_faces

# Local-contrast gain inside faces stays near 1: detail is where identity lives.
FACE_DETAIL_GAIN_RANGE = (0.9, 1.1)
# Share of the synthesised grain kept inside faces: grain measurably moves dlib's identity
# embedding, and film grain on skin reads as blemishes sooner than elsewhere.
FACE_GRAIN = 0.3
HIGHLIGHT_KNEE = 0.95


def _preview(plan: RenderPlan, content_small: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 sRGB in [0, 1]: what ``plan`` makes of ``content_small`` (the
    content at the coefficient maps' resolution) up to and including the colour LUT: no
    lightness maps, face guard, keep-mask, vignette or grain."""
    preview_plan = dataclasses.replace(
        plan,
        face_mask=np.zeros((1, 1), np.uint8),
        keep_mask=np.full((1, 1), 255, np.uint8),
        vignette=0.0,
        grain_curve=np.zeros_like(plan.grain_curve),
        lightness=None,
    )
    return render(content_small, preview_plan).astype(np.float32) / 255.0


def _with_lightness(plan: RenderPlan, content_small: np.ndarray, preview: np.ndarray) -> RenderPlan:
    """``plan`` with its locally affine lightness maps (``lightness``), fitted to its
    ``preview`` (``_preview``). The vignette moves into the maps: it darkens the corners
    while the whole keeps the look's lightness distribution."""
    look_lightness = rgb_to_lab(preview)[..., 0]
    target = look_lightness
    if plan.vignette > 0:
        falloff = vignette_module.falloff(preview.shape[:2], plan.vignette)
        target = rgb_to_lab(preview * falloff[..., None])[..., 0]
    maps = lightness.fit_lightness(
        rgb_to_lab(content_small.astype(np.float32) / 255.0)[..., 0], target, look_lightness
    )
    return dataclasses.replace(plan, lightness=maps, vignette=0.0)


def _with_face_maps(
    plan: RenderPlan,
    content_small: np.ndarray,
    preview: np.ndarray,
    masks: np.ndarray,
    limits: face_guard.FaceLimits,
) -> RenderPlan:
    """``plan`` with each face's affine map (``face_guard``), fitted to what the plan's
    LUT does to that face in its ``preview`` and limited by ``limits``. content_small:
    (h, w, 3) uint8 at the coefficient maps' resolution; masks: (N, h, w) float32, one
    per face."""
    if not len(masks):
        return plan
    look = preview.reshape(-1, 3)
    original = content_small.reshape(-1, 3)
    params = []
    for mask in masks:
        inside = np.flatnonzero(mask.ravel() > 0.01)  # the rest weighs (almost) nothing
        params.append(
            face_guard.fit_face_map(
                original[inside] / np.float32(255), look[inside], mask.ravel()[inside], limits
            )
        )
    return dataclasses.replace(plan, face_maps=face_guard.face_parameter_maps(masks, params))


def guard_mask(
    faces: tuple[Face, ...], content: np.ndarray, output_size: tuple[int, int]
) -> np.ndarray:
    """(H, W) uint8 union of the face guard's masks (``face_guard.guard_masks``, 255 =
    guarded) for ``content`` rendered at ``output_size`` (W, H): where identity protection
    and the faces' own maps act, and nothing else does."""
    content_small = tone.coefficient_image(content, output_size)
    masks = face_guard.guard_masks(faces, content.shape, content_small)
    return _render_mask(masks.max(axis=0, initial=0.0), output_size)


def _render_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) float mask in [0, 1] as the (H, W) uint8 mask ``render`` reads, at ``size``."""
    full = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    return np.clip(full * 255 + 0.5, 0, 255).astype(np.uint8)


def _face_limits(directives: Directives) -> face_guard.FaceLimits:
    return face_guard.GUARD_KEEP_SKIN if directives.keep_skin_tones else face_guard.GUARD


def content_at_render_size(image: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """The content at the size the look is rendered at: its own when the output is larger
    (``render`` enlarges the result), else shrunk to the output size."""
    h, w = image.shape[:2]
    if w * h <= output_size[0] * output_size[1]:
        return image
    return cv2.resize(image, output_size, interpolation=cv2.INTER_AREA)


def look_strength(base_strength: float, variation: Variation, directives: Directives) -> float:
    """Strength of the look for one variation, in [0, 1.6]: ``style_strength`` times the
    variation's times the prompt's "stronger" / "subtle"."""
    return float(np.clip(base_strength * variation.strength * directives.strength, 0.0, 1.6))


def texture_strength(
    artistic: float,
    base_strength: float,
    variation: Variation,
    directives: Directives,
    identity_protection: float,
) -> float:
    """Strength of the texture stage for one variation, in [0, 2] (0 = stage off).

    artistic (``artistic.artistic_strength`` of the reference, 0 for a photograph) times
    the same product of strengths the look gets (``style_strength``, the variation's,
    the prompt's "stronger" / "subtle"), times (1 - identity_protection): a re-render
    after a face drifted paints less, and at protection 1 not at all.
    """
    protection = float(np.clip(identity_protection, 0.0, 1.0))
    strength = artistic * base_strength * variation.strength * directives.strength
    return float(np.clip(strength * (1.0 - protection), 0.0, 2.0))


def reference_palette_share(
    look_strength: float, directives: Directives, identity_protection: float
) -> float:
    """How far the texture stage takes the painted pixels to the reference's own palette
    (``texture.transfer_texture``'s ``palette_from_reference``), in [0, 1].

    The look's strength (capped at 1) times (1 - identity_protection). 0 when the prompt
    asked to keep the colours or the lighting, or for black and white (there the colour
    stage's palette is what was asked for), and to keep the background (the pass would
    give the subject the colours the kept background lacks).
    """
    held_back = directives.keep_colours or directives.keep_lighting or directives.monochrome
    if held_back or directives.keep_background:
        return 0.0
    protection = float(np.clip(identity_protection, 0.0, 1.0))
    return float(np.clip(look_strength, 0.0, 1.0)) * (1.0 - protection)


class ClassicEngine:
    """Look transfer: colour LUT, two-scale tone, locally affine lightness, grain, vignette,
    face guard, and the reference's marks when it is a painting, print or drawing.

    texture: False switches the texture stage off whatever the reference (the baseline
    of ``benchmarks/texture_transfer.py``); True also loads the stage's compiled kernels
    now (numba's on-disk cache, once per process), so no request pays for that.
    """

    name = "classic"

    def __init__(self, *, texture: bool = True) -> None:
        self.texture = texture
        if texture:
            texture_module.warm_up()

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        started = time.perf_counter()
        directives = parse_directives(request.prompt)
        faces = request.faces if request.faces is not None else detect_faces(request.content)
        t_detect = time.perf_counter()

        content_small = tone.coefficient_image(request.content, request.output_size)
        face_masks_small = face_guard.guard_masks(faces, request.content.shape, content_small)
        guard_small = face_masks_small.max(axis=0, initial=0.0)
        look = fit_look(request.content, request.reference, guard_small, _face_limits(directives))
        t_fit = time.perf_counter()

        content = content_at_render_size(request.content, request.output_size)
        size = (content.shape[1], content.shape[0])
        coef_a, coef_b = tone.coefficient_maps(content_small)
        face_mask = _render_mask(guard_small, size) if faces else np.zeros((1, 1), np.uint8)
        keep_mask, keep_note = self._keep_mask(request, faces, directives, size)
        artistic = artistic_strength(request.reference) if self.texture else 0.0
        texture_mask = self._texture_mask(faces, request, keep_mask) if artistic > 0 else None
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
            plan, applied, limits = self._plan(
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
            preview = _preview(plan, content_small)
            plan = _with_lightness(plan, content_small, preview)
            plan = _with_face_maps(plan, content_small, preview, face_masks_small, limits)
            image = render(content, plan, request.output_size)
            t_render = time.perf_counter()
            strength = texture_strength(
                artistic, base_strength, variation, directives, request.identity_protection
            )
            palette_share = reference_palette_share(
                look_strength(base_strength, variation, directives),
                directives,
                request.identity_protection,
            )
            if strength > 0:
                image = texture_module.transfer_texture(
                    image,
                    request.reference,
                    strength=strength,
                    face_mask=texture_mask,
                    seed=seed,
                    keep_skin=directives.keep_skin_tones,
                    palette_from_reference=palette_share,
                )
                applied["texture"] = {
                    "strength": round(strength, 3),
                    "artistic": round(artistic, 3),
                    "palette_from_reference": round(palette_share, 3),
                }
            else:
                applied["texture"] = self._texture_off_note(artistic, request.identity_protection)
            applied.update(faces_guarded=len(faces), keep_background=keep_note)
            t_texture = time.perf_counter()
            report = ImageReport(
                engine=self.name,
                seed=seed,
                variation=index,
                variation_description=variation.description,
                applied=applied,
                unhandled_instructions=list(directives.unhandled),
                timings={
                    **shared,
                    "render": t_render - t0,
                    "texture": t_texture - t_render,
                },
            )
            outputs.append(RemixOutput(image=image, report=report))
            if progress is not None:
                progress(len(outputs), request.num_outputs)
        return outputs

    def _texture_off_note(self, artistic: float, identity_protection: float) -> str:
        if not self.texture:
            return "off: texture stage disabled"
        if artistic <= 0:
            return "off: photographic reference (no painted, printed or drawn marks)"
        if identity_protection >= 1:
            return "off: full identity protection"
        return "off: zero strength"

    @staticmethod
    def _texture_mask(
        faces: tuple[Face, ...], request: RemixRequest, keep_mask: np.ndarray
    ) -> np.ndarray:
        """(H, W) float32 in [0, 1] at the output size: where the texture stage must not
        paint. The faces' skin (``texture.face_protection_mask``) and, with "keep the
        original background", everything the keep-mask keeps."""
        mask = texture_module.face_protection_mask(
            faces, request.content.shape, request.output_size
        )
        if keep_mask.shape != (1, 1):
            kept = 1.0 - keep_mask.astype(np.float32) / 255.0
            kept = cv2.resize(kept, request.output_size, interpolation=cv2.INTER_LINEAR)
            np.maximum(mask, kept, out=mask)
        return mask

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
    ) -> tuple[RenderPlan, dict, face_guard.FaceLimits]:
        strength = look_strength(base_strength, variation, directives)
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
        limits = _face_limits(directives)
        # Extra protection (a re-render after a face drifted): tighter limits, the face's
        # own detail and less grain; at 1 the guard keeps a quarter of its normal leeway.
        protection = float(np.clip(protection, 0.0, 1.0))
        limits = limits.scaled(1.0 - 0.75 * protection)
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
            face_maps=identity_face_maps(),
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
        return plan, applied, limits

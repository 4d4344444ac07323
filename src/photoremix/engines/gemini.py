"""The gemini engine: remix through Google's Gemini image models with ``google-genai``.

One ``generateContent`` call per output image. Each call sends, in this order:

1. the instruction text (``prompting.remix_instruction``: image roles, what to take from
   the reference and what to keep, identity photos, a variation hint, the user's prompt);
2. the content photo and 3. the style reference (JPEG, long side at most UPLOAD_LONG_SIDE);
4. identity photos of the recognised people, while the model's input limit allows
   (ModelLimits.max_input_images: 14 for Gemini 3 Pro Image / 3.1 Flash Image, 3 for 2.5
   Flash Image; engines.md §1.7). Identity photos beyond the limit are left out, and
   reported.

``image_config`` asks for the supported aspect ratio nearest the content's
(``nearest_aspect_ratio``; engines.md §1.5) at ``image_size`` "2K" (left unset for models
with a single 1K tier).

Size policy (``fit_to_size``): the returned image has the chosen Gemini ratio, not exactly
the content's, and Gemini's own pixel size. It is scaled, keeping its aspect ratio, until it
covers the output size, and the overhang (a few pixels for common ratios; more for unusual
ones such as 2:1, sent as 16:9) is cropped evenly from both sides. Nothing is stretched or
padded. Each report says how much was cropped.

Calls run concurrently, at most ``gemini_concurrency`` at once per engine (one thread pool
per engine; the service builds one engine per process). A call is retried with exponential
backoff (tenacity), up to ``gemini_retries`` times, on HTTP 408/429/5xx, on timeouts and
connection failures, and on a reply without an image. A blocked prompt or a safety finish
reason raises ``ContentModerationError`` at once, naming Google's reason.

Gemini has no seed: outputs differ because each call samples anew and because variation
``i`` carries a short hint (bolder, gentler, ...). Reports still give ``seed + i``.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import math
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import cv2
import numpy as np
import tenacity

from photoremix.engines.base import (
    ContentModerationError,
    EngineError,
    IdentityImage,
    ImageReport,
    ProgressCallback,
    RemixOutput,
    RemixRequest,
)
from photoremix.engines.prompting import (
    ROLE_CONTENT,
    ROLE_IDENTITY,
    ROLE_REFERENCE,
    identities_within,
    identity_report,
    remix_instruction,
    strength_note,
)
from photoremix.imaging import ImageError, decode_image, encode_image
from photoremix.settings import Settings
from photoremix.vision.faces import detect_faces

if TYPE_CHECKING:
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types

ENGINE_NAME: Final = "gemini"
# The pip requirement of this engine (a default dependency of photoremix).
REQUIREMENT: Final = "google-genai>=3.4,<4"
# google-genai 3.x defaults to "v1"; the image options are documented on v1beta, and a
# custom base URL (proxy) must name the version anyway (engines.md §1.4).
API_VERSION: Final = "v1beta"
IMAGE_SIZE: Final = "2K"
# Gemini bills an input image at a fixed token count whatever its size, so larger uploads
# only cost transfer time and the 7 MB-per-image limit.
UPLOAD_LONG_SIDE: Final = 2048
IDENTITY_UPLOAD_LONG_SIDE: Final = 1024
UPLOAD_MIME_TYPE: Final = "image/jpeg"

# engines.md §1.5: all Gemini image models take these ...
COMMON_ASPECT_RATIOS: Final = (
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)  # fmt: skip
# ... and Gemini 3.1 Flash Image ("Nano Banana 2") also these.
TALL_AND_WIDE_RATIOS: Final = ("1:4", "4:1", "1:8", "8:1")

# HTTP statuses worth another try (the SDK's own default set): timeout, rate limit, 5xx.
RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
# Finish reasons that mean Google's filters withheld the image (engines.md §1.6). Other
# reasons without an image (STOP with text only, NO_IMAGE, IMAGE_OTHER, OTHER, ...) are
# retried.
MODERATION_FINISH_REASONS: Final = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
# How much of the model's text a "no image" error quotes.
QUOTED_TEXT_CHARS: Final = 200


class _NoImageError(Exception):
    """A reply without an image (retryable); becomes an EngineError when retries run out."""

    def __init__(self, finish_reason: str, detail: str = "") -> None:
        super().__init__(f"no image (finish reason {finish_reason})")
        self.finish_reason = finish_reason
        self.detail = detail  # what came instead, for the final message; may be empty


@dataclass(frozen=True)
class ModelLimits:
    """What a Gemini image model accepts.

    aspect_ratios: values ``image_config.aspect_ratio`` may take.
    image_size: the ``image_config.image_size`` to send; None for single-tier (1K) models.
    max_input_images: images one request may carry.
    """

    aspect_ratios: tuple[str, ...]
    image_size: str | None
    max_input_images: int


def model_limits(model: str) -> ModelLimits:
    """The limits of Gemini model ``model`` (engines.md §1.5, §1.7), by model-id prefix.

    Unknown ids get the limits of Gemini 3 Pro Image (the common ratios, 2K, 14 images).
    """
    if model.startswith("gemini-2.5-flash-image"):
        return ModelLimits(COMMON_ASPECT_RATIOS, None, 3)
    if model.startswith("gemini-3.1-flash-lite-image"):
        return ModelLimits(COMMON_ASPECT_RATIOS, None, 14)
    if model.startswith("gemini-3.1-flash-image"):
        return ModelLimits(COMMON_ASPECT_RATIOS + TALL_AND_WIDE_RATIOS, IMAGE_SIZE, 14)
    return ModelLimits(COMMON_ASPECT_RATIOS, IMAGE_SIZE, 14)


def nearest_aspect_ratio(width: int, height: int, ratios: Sequence[str]) -> str:
    """The ratio among ``ratios`` ("W:H" strings) nearest ``width / height``, compared on a
    log scale so that 2:1 and 1:2 are equally far from 1:1."""
    if width <= 0 or height <= 0:
        raise ValueError(f"Image sides must be positive, got {width}x{height}.")
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        ratio_width, ratio_height = (int(side) for side in ratio.split(":"))
        return abs(math.log(ratio_width / ratio_height) - target)

    return min(ratios, key=distance)


def fit_to_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to cover ``size`` = (width, height), then centre-cropped to it.

    image: (H, W, 3) uint8. Returns a C-contiguous (height, width, 3) uint8 array; the
    aspect ratio is kept (no stretching), the overhang of the longer relative side is
    split evenly between both edges (the odd pixel goes to the right or bottom edge).
    Raises ValueError for a bad image or size.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"fit_to_size needs an (H, W, 3) uint8 image, got {image.shape}.")
    target_width, target_height = size
    if target_width <= 0 or target_height <= 0:
        raise ValueError(f"Output sides must be positive, got {target_width}x{target_height}.")
    height, width = image.shape[:2]
    if (width, height) == (target_width, target_height):
        return np.ascontiguousarray(image)
    scale = max(target_width / width, target_height / height)
    # max(): rounding must never leave the scaled image a pixel short of the target.
    scaled_width = max(target_width, round(width * scale))
    scaled_height = max(target_height, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(image, (scaled_width, scaled_height), interpolation=interpolation)
    left = (scaled_width - target_width) // 2
    top = (scaled_height - target_height) // 2
    return np.ascontiguousarray(scaled[top : top + target_height, left : left + target_width])


@dataclass(frozen=True)
class _Variation:
    description: str
    hint: str  # a sentence for the instruction; empty for the faithful output


# The same axes as the classic engine's variations, said in words.
VARIATIONS: Final = (
    _Variation("faithful: the reference's look as it is", ""),
    _Variation(
        "bolder: asked for a stronger take on the reference's look",
        "For this version, push the reference's look further: a bolder colour grade, "
        "stronger contrast and more pronounced texture.",
    ),
    _Variation(
        "gentler: asked for a subtler take, closer to the original photo",
        "For this version, apply the reference's look gently and stay closer to the "
        "content photo's own colours and light.",
    ),
    _Variation(
        "alternate mood: asked for the reference's look in a warmer, brighter key",
        "For this version, interpret the reference's look in a warmer, brighter key.",
    ),
)


def variation_for(index: int) -> _Variation:
    """Variation ``index``'s hint; beyond the table it repeats (Gemini samples anew)."""
    return VARIATIONS[index % len(VARIATIONS)]


def problem(settings: Settings) -> str | None:
    """Why the gemini engine cannot run with ``settings``: a sentence, or None. Cheap: no
    network, and google-genai is looked up, not imported."""
    try:
        installed = importlib.util.find_spec("google.genai") is not None
    except ModuleNotFoundError:  # no "google" namespace package at all
        installed = False
    if not installed:
        return f"the google-genai package is not installed (pip install '{REQUIREMENT}')"
    key = settings.gemini_api_key
    if key is None or not key.get_secret_value().strip():
        return "PHOTOREMIX_GEMINI_API_KEY is not set"
    base_url = settings.gemini_base_url
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        return f"PHOTOREMIX_GEMINI_BASE_URL must start with http:// or https://, got {base_url!r}"
    return None


class GeminiEngine:
    """Remix with a Gemini image model; see the module docstring for the request built."""

    name = ENGINE_NAME

    def __init__(
        self,
        settings: Settings,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        """backoff_*: the exponential backoff between attempts (jittered); tests shorten it."""
        reason = problem(settings)
        if reason is not None or settings.gemini_api_key is None:
            raise EngineError(f"the gemini engine cannot start: {reason}")
        from google import genai
        from google.genai import types

        self.model = settings.gemini_model
        self.limits = model_limits(self.model)
        self._timeout_s = settings.gemini_timeout_s
        self._attempts = settings.gemini_retries + 1
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        # No SDK retry_options: tenacity below retries HTTP failures and image-less replies
        # under one attempt count, which the report shows.
        self._client = genai.Client(
            vertexai=False,
            api_key=settings.gemini_api_key.get_secret_value(),
            http_options=types.HttpOptions(
                base_url=settings.gemini_base_url,
                api_version=API_VERSION,
                timeout=math.ceil(settings.gemini_timeout_s * 1000),  # milliseconds
            ),
        )
        self._timeout_errors, self._connection_errors = _transport_errors()
        self._pool = ThreadPoolExecutor(
            max_workers=settings.gemini_concurrency, thread_name_prefix="gemini"
        )

    def close(self) -> None:
        """Stop the worker threads and close the HTTP client."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        from google.genai import types

        started = time.perf_counter()
        faces = request.faces if request.faces is not None else detect_faces(request.content)
        t_faces = time.perf_counter()

        content_width, content_height = request.content.shape[1], request.content.shape[0]
        aspect_ratio = nearest_aspect_ratio(
            content_width, content_height, self.limits.aspect_ratios
        )
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(
                aspect_ratio=aspect_ratio, image_size=self.limits.image_size
            ),
        )
        # two inputs are the content and the reference
        sent_identities, left_out = identities_within(
            request.identities, self.limits.max_input_images - 2
        )
        images = [
            _image_part(request.content, UPLOAD_LONG_SIDE),
            _image_part(request.reference, UPLOAD_LONG_SIDE),
            *(
                _image_part(identity.image, IDENTITY_UPLOAD_LONG_SIDE)
                for identity in sent_identities
            ),
        ]
        shared_timings = {
            "detect_faces": t_faces - started if request.faces is None else 0.0,
            "encode_inputs": time.perf_counter() - t_faces,
        }
        applied_shared: dict[str, Any] = {
            "model": self.model,
            "aspect_ratio": aspect_ratio,
            "image_size": self.limits.image_size or "the model's only size (1K)",
            "seed": "not sent: Gemini has no seed parameter; the seed only labels the output",
            **identity_report(
                len(faces),
                sent_identities,
                left_out,
                request.identity_protection,
                request.style_strength,
            ),
        }

        indices = range(request.variation_offset, request.variation_offset + request.num_outputs)
        futures: dict[Future[RemixOutput], int] = {}
        for index in indices:
            contents = [self._instruction(request, sent_identities, len(faces), index), *images]
            future = self._pool.submit(
                self._render, index, contents, config, request, applied_shared, shared_timings
            )
            futures[future] = index
        return self._collect(futures, request.num_outputs, progress)

    def _instruction(
        self,
        request: RemixRequest,
        identities: Sequence[IdentityImage],
        face_count: int,
        index: int,
    ) -> str:
        roles = [ROLE_CONTENT, ROLE_REFERENCE, *([ROLE_IDENTITY] * len(identities))]
        return remix_instruction(
            request.prompt,
            [identity.name for identity in identities],
            request.identity_protection,
            roles,
            face_count=face_count,
            notes=[strength_note(request.style_strength), variation_for(index).hint],
        )

    def _collect(
        self,
        futures: dict[Future[RemixOutput], int],
        total: int,
        progress: ProgressCallback | None,
    ) -> list[RemixOutput]:
        """Outputs in variation order; the first failure cancels the calls not yet started
        and is raised (calls already in flight finish, and are discarded)."""
        outputs: dict[int, RemixOutput] = {}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                outputs[futures[future]] = future.result()
                if progress is not None:
                    progress(len(outputs), total)
        return [outputs[index] for index in sorted(outputs)]

    def _render(
        self,
        index: int,
        contents: list[Any],
        config: genai_types.GenerateContentConfig,
        request: RemixRequest,
        applied_shared: dict[str, Any],
        shared_timings: dict[str, float],
    ) -> RemixOutput:
        t0 = time.perf_counter()
        image, attempts = self._generate(contents, config)
        t_call = time.perf_counter()
        returned_height, returned_width = image.shape[:2]
        fitted = fit_to_size(image, request.output_size)
        variation = variation_for(index)
        applied = {
            **applied_shared,
            "attempts": attempts,
            "returned_size": [returned_width, returned_height],
            "fit": _fit_description((returned_width, returned_height), request.output_size),
            "variation_hint": variation.hint or None,
        }
        report = ImageReport(
            engine=ENGINE_NAME,
            seed=request.seed + index,
            variation=index,
            variation_description=variation.description,
            applied=applied,
            timings={
                **shared_timings,
                "call": t_call - t0,
                "fit": time.perf_counter() - t_call,
            },
        )
        return RemixOutput(image=fitted, report=report)

    def _generate(
        self, contents: list[Any], config: genai_types.GenerateContentConfig
    ) -> tuple[np.ndarray, int]:
        """One output image and the attempts it took; EngineError when none came."""
        from google.genai import errors

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=tenacity.wait_exponential_jitter(
                initial=self._backoff_initial_s, max=self._backoff_max_s
            ),
            retry=tenacity.retry_if_exception(self._is_retryable),
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    response = self._client.models.generate_content(
                        model=self.model, contents=contents, config=config
                    )
                    image = _image_from_response(response)
        except _NoImageError as error:
            detail = f"; {error.detail}" if error.detail else ""
            raise EngineError(
                f"Gemini returned no image ({_attempts(attempts)}, last finish reason "
                f"{error.finish_reason}){detail}. Try again, or rephrase the prompt."
            ) from None
        except errors.APIError as error:
            raise EngineError(self._api_error_message(error, attempts)) from None
        except self._timeout_errors:
            raise EngineError(
                f"Gemini did not answer within {self._timeout_s:g} s ({_attempts(attempts)}); "
                "try again later."
            ) from None
        except self._connection_errors as error:
            raise EngineError(
                f"Could not reach the Gemini API ({type(error).__name__}, "
                f"{_attempts(attempts)}); try again later."
            ) from None
        except errors.UnknownApiResponseError:
            raise EngineError("The Gemini API sent a reply that is not JSON.") from None
        return image, attempts

    def _is_retryable(self, error: BaseException) -> bool:
        from google.genai import errors

        if isinstance(error, (_NoImageError, *self._timeout_errors, *self._connection_errors)):
            return True
        return isinstance(error, errors.APIError) and error.code in RETRYABLE_STATUS

    def _api_error_message(self, error: genai_errors.APIError, attempts: int) -> str:
        status = f"HTTP {error.code}" + (f" {error.status}" if error.status else "")
        detail = (error.message or "").strip()[:QUOTED_TEXT_CHARS]
        if error.code == 429:
            return (
                f"Gemini is rate-limiting this service ({status}, {_attempts(attempts)}); "
                "try again in a minute."
            )
        if error.code in RETRYABLE_STATUS:
            return f"Gemini failed ({status}, {_attempts(attempts)}); try again later."
        if error.code in (401, 403):
            return (
                f"Gemini refused this service's API key ({status}); the operator must check "
                "PHOTOREMIX_GEMINI_API_KEY."
            )
        if error.code == 404:
            return (
                f"Gemini does not offer the model {self.model!r} ({status}); the operator "
                "must check PHOTOREMIX_GEMINI_MODEL."
            )
        return f"Gemini rejected the request ({status}: {detail})."


def _image_from_response(response: genai_types.GenerateContentResponse) -> np.ndarray:
    """The generated image of ``response``, decoded to (H, W, 3) uint8 sRGB.

    Raises ContentModerationError for a blocked prompt or a safety finish reason, and
    _NoImageError (retryable) when no decodable image came back.
    """
    feedback = response.prompt_feedback
    if not response.candidates:
        block_reason = _enum_name(feedback.block_reason) if feedback else None
        if block_reason:
            raise ContentModerationError(
                block_reason,
                f"Gemini blocked the request ({block_reason}); change the prompt or the images.",
            )
        raise _NoImageError("none (no candidates)")
    candidate = response.candidates[0]
    finish_reason = _enum_name(candidate.finish_reason) or "unspecified"
    if finish_reason in MODERATION_FINISH_REASONS:
        raise ContentModerationError(
            finish_reason,
            f"Gemini withheld the image ({finish_reason}); change the prompt or the images.",
        )
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    # Thinking models may send draft images marked as thoughts first; the answer is the
    # last image that is not a thought.
    images = [
        part.inline_data
        for part in parts
        if part.inline_data is not None
        and part.inline_data.data
        and (part.inline_data.mime_type or "").startswith("image/")
        and not part.thought
    ]
    text = " ".join(part.text.strip() for part in parts if part.text and not part.thought)
    if not images:
        raise _NoImageError(finish_reason, f'the model said: "{_shorten(text)}"' if text else "")
    try:
        return decode_image(images[-1].data)
    except ImageError as error:
        raise _NoImageError(finish_reason, f"its image could not be decoded: {error}") from None


def _image_part(image: np.ndarray, long_side: int) -> genai_types.Part:
    """``image`` as an inline JPEG part, downscaled to at most ``long_side`` pixels."""
    from google.genai import types

    height, width = image.shape[:2]
    if max(height, width) > long_side:
        factor = long_side / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return types.Part.from_bytes(data=encode_image(image, "jpg"), mime_type=UPLOAD_MIME_TYPE)


def _transport_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(timeout errors, connection errors) of the HTTP clients google-genai may use: it
    uses httpx2 (an httpx fork with its own classes) in 3.x and httpx before."""
    timeouts: list[type[Exception]] = []
    connections: list[type[Exception]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        connections += [module.NetworkError, module.RemoteProtocolError]
    return tuple(timeouts), tuple(connections)


def _fit_description(returned: tuple[int, int], size: tuple[int, int]) -> str:
    (width, height), (target_width, target_height) = returned, size
    scale = max(target_width / width, target_height / height)
    crop_width = max(target_width, round(width * scale)) - target_width
    crop_height = max(target_height, round(height * scale)) - target_height
    return (
        f"scaled x{scale:.3f} from {width}x{height} to cover {target_width}x{target_height}, "
        f"cropped {crop_width} px across and {crop_height} px down, centred"
    )


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.value if isinstance(value, enum.Enum) else value)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTED_TEXT_CHARS else text[: QUOTED_TEXT_CHARS - 1] + "…"


def _attempts(count: int) -> str:
    return f"{count} attempt" + ("" if count == 1 else "s")

"""Request and response bodies of the HTTP API, with the documentation OpenAPI shows.

Field names, types and defaults follow the hosted Phota API (docs/api.md lists where we
had to choose). ``seed``, ``style_strength`` and ``reports`` are our extensions; clients
that do not know them can ignore them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError, PydanticKnownError

# Accepted by /edit and /generate, but Remix fixes them; say so instead of "extra field".
_NOT_ACCEPTED = {
    "base_model": "Remix always renders with this server's configured engine",
    "aspect_ratio": "Remix keeps the input image's aspect ratio",
    "resolution": "Remix always renders at 2K",
}


class RemixBody(BaseModel):
    """``POST /v1/phota/remix``: restyle ``input_image`` with the look of ``reference_image``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Not min_length=1: pydantic counts the characters of megabytes of base64 for it (0.2 ms
    # a request); _refuse_empty_images checks the same, and the schema still says it.
    input_image: str = Field(
        json_schema_extra={"minLength": 1},
        description=(
            "The content photo: raw base64, a data: URI, or a public http(s) URL. JPEG, PNG, "
            "WebP or HEIC/HEIF; images over 4096 px on the long side are downscaled to 4096."
        ),
    )
    reference_image: str = Field(
        json_schema_extra={"minLength": 1},
        description="The style source, in the same forms as input_image.",
    )
    profile_ids: list[str] = Field(
        default_factory=list,
        max_length=20,
        description=(
            "Profiles whose identity is preserved when recognised. Also read from "
            "[[profile_id]] mentions in the prompt. Each must be yours and READY, else 400."
        ),
    )
    prompt: str | None = Field(
        default=None,
        max_length=4000,
        description=(
            "Optional instructions, e.g. 'keep the original background, warmer'. "
            "Instructions the engine does not understand are listed per image in "
            "reports[].unhandled_instructions."
        ),
    )
    num_output_images: int = Field(
        default=1, ge=1, le=4, description="Number of variations, 1-4. Each is billed."
    )
    output_format: Literal["jpg", "png"] = Field(
        default="jpg", description='Encoding of the outputs: "jpg" (default) or "png".'
    )
    response_mode: Literal["bytes", "urls"] = Field(
        default="bytes",
        description=(
            '"bytes": base64 images in `images`; "urls": signed download URLs, valid 24 h, '
            "in `download_urls`. The other field is returned empty."
        ),
    )
    is_async: bool = Field(
        default=False,
        alias="async",
        description=(
            'Run as a job: answer 202 with {job_id, poll_url} at once. Needs response_mode "urls".'
        ),
    )
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description=(
            "With async: an https URL that receives the finished job document by POST, signed "
            "in X-Phota-Signature (see GET /v1/phota/webhook-secret). Retried with backoff."
        ),
    )
    client_request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description=(
            "Idempotency key: a repeated submit with the same id and body returns the first "
            "job instead of a new (and newly charged) one; the same id with another body is a 409."
        ),
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Extension. Base seed; output i uses seed + i. Default: random (reported).",
    )
    style_strength: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Extension. 0 keeps the input's look, 1 (default) applies the full transfer.",
    )

    engine: str | None = Field(
        default=None,
        max_length=40,
        description=(
            "Extension. The engine to render with, one of the enabled engines listed by "
            "GET /v1/engines; default: the server's default engine."
        ),
    )

    @field_validator("input_image", "reference_image")
    @classmethod
    def _refuse_empty_images(cls, value: str) -> str:
        if not value:
            raise PydanticKnownError("string_too_short", {"min_length": 1})
        return value

    @model_validator(mode="before")
    @classmethod
    def _refuse_fixed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, reason in _NOT_ACCEPTED.items():
                if name in data:
                    raise PydanticCustomError(
                        "not_accepted_by_remix",
                        "Remix does not accept {name}: {reason}. Remove the field.",
                        {"name": name, "reason": reason},
                    )
        return data


class KnownSubjects(BaseModel):
    counts: dict[str, int] = Field(
        description="profile_id -> number of outputs in which that profile was recognised."
    )


class ImageReport(BaseModel):
    """Extension: what the engine did for one output image."""

    engine: str = Field(description="Engine that rendered the image.")
    seed: int = Field(description="Seed of this image; resubmit it to reproduce the image.")
    variation: int = Field(description="Index of the variation (0 = the faithful one).")
    variation_description: str = Field(description="How this variation differs from the others.")
    applied: dict[str, Any] = Field(description="Parameters the engine applied.")
    unhandled_instructions: list[str] = Field(
        description="Parts of the prompt the engine did not understand (never dropped silently)."
    )
    metrics: dict[str, Any] = Field(description="Measurements the engine made, if any.")
    timings: dict[str, float] = Field(description="Seconds spent per stage.")


class RemixResponse(BaseModel):
    known_subjects: KnownSubjects = Field(
        description="Profiles recognised in the outputs (used for billing)."
    )
    images: list[str] = Field(
        description='Base64 images in output_format; filled in "bytes" mode, else empty.'
    )
    download_urls: list[str] = Field(
        description='Signed URLs valid for 24 h; filled in "urls" mode, else empty.'
    )
    reports: list[ImageReport] = Field(description="Extension: one report per output image.")


class JobHandle(BaseModel):
    job_id: str = Field(description="Id of the accepted job.")
    poll_url: str = Field(description="GET this URL (with your X-API-Key) for status and result.")


class JobError(BaseModel):
    status_code: int = Field(description="The HTTP status a synchronous request would have got.")
    code: str = Field(description="Machine-readable reason, e.g. timeout, engine_error.")
    detail: str = Field(description="What went wrong and what to do about it.")


class JobDocument(BaseModel):
    """An async job. Also the body POSTed to the job's callback_url when it finishes."""

    job_id: str = Field(description="Id of the job.")
    status: Literal["queued", "running", "succeeded", "failed"] = Field(
        description="queued -> running -> succeeded | failed."
    )
    poll_url: str = Field(description="This document's own URL.")
    created_at: str = Field(description="ISO 8601, UTC.")
    started_at: str | None = Field(description="ISO 8601, UTC; null until it runs.")
    finished_at: str | None = Field(description="ISO 8601, UTC; null until it finishes.")
    result: RemixResponse | None = Field(
        description="When succeeded: the same shape as the synchronous response."
    )
    error: JobError | None = Field(description="When failed: why. The credit was refunded.")


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong and what to do about it.")
    code: str = Field(description="Machine-readable reason.")
    request_id: str = Field(description="Quote this id when asking for help.")


class LedgerRow(BaseModel):
    id: int = Field(description="Ledger row id (increasing).")
    created_at: str = Field(description="ISO 8601, UTC.")
    kind: Literal["credit", "reserve", "settle", "refund"] = Field(
        description=(
            "credit: money added; reserve: worst case held before work; settle: closes a "
            "reservation (the note says what was charged); refund: money given back."
        )
    )
    amount: str = Field(description="Signed dollars, e.g. '-0.45'.")
    balance_after: str = Field(description="Balance in dollars after this movement.")
    reference: str | None = Field(description="What the movement is for, e.g. 'job:<id>'.")
    note: str = Field(description="Human-readable explanation.")


class BalanceResponse(BaseModel):
    balance: str = Field(description="Prepaid balance in dollars (exact decimal), e.g. '9.76'.")
    currency: Literal["USD"] = Field(default="USD", description="Always USD.")
    ledger: list[LedgerRow] = Field(description="Most recent balance movements, newest first.")


class WebhookSecretResponse(BaseModel):
    webhook_secret: str = Field(description="Key of the HMAC-SHA256 signature of your callbacks.")
    signature_header: str = Field(description="Header carrying the signature: X-Phota-Signature.")
    scheme: str = Field(description="How to verify a callback with the secret.")


# --- profiles (trained identities) -------------------------------------------------------

ProfileStatus = Literal["VALIDATING", "QUEUING", "IN_PROGRESS", "READY", "ERROR", "INACTIVE"]


class AddProfileBody(BaseModel):
    """``POST /v1/phota/profiles/add``: train a profile of one subject from its photos."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image_urls: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1,
        max_length=50,
        description=(
            "Photos of the subject: public http(s) URLs or (extension) raw base64 / data: URIs, "
            "JPEG, PNG, WebP or HEIC/HEIF. 5-50 in all with the default settings; the count "
            "must also fit training_tier. Group shots are fine when the subject is the person "
            "seen in most photos. A wrong count is a 422 naming image_urls."
        ),
    )
    training_tier: Literal["standard", "fast"] = Field(
        default="standard",
        description=(
            '"standard" (10-50 photos, $2.90) or "fast" (5-10 photos, $1.49), with the '
            "default settings. The price is reserved at once (402 when short), charged when "
            "the profile is READY and refunded if training fails."
        ),
    )
    tag: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description=(
            "Optional immutable label to group profiles, e.g. your end-user's id; "
            "filter with GET /v1/phota/profiles/ids?tag=..."
        ),
    )


class AddProfileResponse(BaseModel):
    profile_id: str = Field(description="Id of the new profile; poll its status until READY.")


class ProfileSummary(BaseModel):
    profile_id: str = Field(description="Id of the profile.")
    status: ProfileStatus = Field(description="Training status (see the status endpoint).")
    tag: str | None = Field(description="The tag given when the profile was added.")
    created_at: str = Field(description="ISO 8601, UTC.")


class ProfileIdsResponse(BaseModel):
    """The hosted API shows only ``{"profiles": []}``; the element shape is this server's
    choice: an object per profile rather than a bare id, so one call shows the status too."""

    profiles: list[ProfileSummary] = Field(description="The account's profiles, oldest first.")


class ProfileStatusResponse(BaseModel):
    profile_id: str = Field(description="The profile queried.")
    status: ProfileStatus = Field(
        description=(
            "VALIDATING (photos being fetched and checked) -> QUEUING (waiting to be trained) "
            "-> IN_PROGRESS (training) -> READY (usable in remix) or ERROR (see message). "
            "INACTIVE is part of the hosted enum and is not used by this server."
        )
    )
    message: str | None = Field(
        description=(
            "ERROR: what failed, naming each photo (image_urls[i]) and why. READY: how many "
            "photos were used, and which were not and why. Null while training."
        )
    )


class DeleteProfileResponse(BaseModel):
    profile_id: str = Field(description="Id of the deleted profile.")
    status: str = Field(description='"ok": the profile, its photos and its model are gone.')


class EngineInfo(BaseModel):
    name: str = Field(description="Engine name, as accepted in the remix `engine` field.")
    enabled: bool = Field(description="Enabled by the operator (PHOTOREMIX_ENGINES).")
    ready: bool = Field(description="Enabled and started: requests may ask for it.")
    default: bool = Field(description="Used when a request names no engine.")
    detail: str | None = Field(description="Why it is not ready, when it is not.")


class EnginesResponse(BaseModel):
    engines: list[EngineInfo] = Field(description="Every engine this server knows.")

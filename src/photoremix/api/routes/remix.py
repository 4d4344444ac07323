"""``POST /v1/phota/remix`` and ``GET /v1/phota/jobs/{job_id}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from photoremix.api.deps import AccountDep, ServiceDep
from photoremix.api.json_codec import FastJSONResponse, FastJSONRoute
from photoremix.api.schemas import ErrorBody, JobDocument, JobHandle, RemixBody, RemixResponse
from photoremix.services.remix import Accepted, Pending, RemixSubmission, Replayed

router = APIRouter(prefix="/v1/phota", tags=["Studio"], route_class=FastJSONRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "Invalid request: bad image or URL, a field combination, or a profile "
        "that is unknown or not READY.",
    },
    401: {"model": ErrorBody, "description": "Invalid API key in the X-API-Key header."},
    402: {"model": ErrorBody, "description": "Insufficient prepaid credit balance."},
    403: {"model": ErrorBody, "description": "Missing X-API-Key header (no API key provided)."},
    404: {"model": ErrorBody, "description": "Resource not found (e.g. another account's job)."},
    409: {"model": ErrorBody, "description": "client_request_id reused with another request."},
    413: {"model": ErrorBody, "description": "Request body larger than the server's limit."},
    500: {"model": ErrorBody, "description": "Internal error; nothing was charged."},
    503: {"model": ErrorBody, "description": "Busy (all workers and the queue are full)."},
    504: {"model": ErrorBody, "description": "Time limit exceeded; the credit was refunded."},
}


@router.post(
    "/remix",
    response_model=RemixResponse,
    responses={
        202: {"model": JobHandle, "description": "Async job accepted; poll job_id at poll_url."},
        **_ERRORS,
    },
    summary="Restyle a photo to match a reference image",
)
def remix(body: RemixBody, request: Request, account: AccountDep, service: ServiceDep) -> Any:
    """Content from `input_image`, look from `reference_image`, people kept recognisable.

    The output is 2K (the input's aspect ratio, about 4.2 megapixels). Billed per output:
    $0.12, or $0.15 when a profile is recognised in it; the worst case is reserved first.
    """
    submission = RemixSubmission(
        input_image=body.input_image,
        reference_image=body.reference_image,
        num_output_images=body.num_output_images,
        output_format=body.output_format,
        response_mode=body.response_mode,
        prompt=body.prompt,
        profile_ids=tuple(body.profile_ids),
        is_async=body.is_async,
        callback_url=body.callback_url,
        client_request_id=body.client_request_id,
        seed=body.seed,
        style_strength=body.style_strength,
        engine=body.engine,
    )
    base_url = service.settings.public_url or str(request.base_url)
    outcome = service.submit(account, submission, base_url)
    if isinstance(outcome, Accepted):
        return FastJSONResponse(
            {"job_id": outcome.job_id, "poll_url": outcome.poll_url}, status_code=202
        )
    if isinstance(outcome, Replayed):
        return FastJSONResponse(outcome.response)
    assert isinstance(outcome, Pending)
    # Built by the service from plain types: skip a second validation of megabytes of base64.
    return FastJSONResponse(service.wait(outcome))


@router.get(
    "/jobs/{job_id}",
    response_model=JobDocument,
    responses={401: _ERRORS[401], 403: _ERRORS[403], 404: _ERRORS[404]},
    summary="Poll the status and result of an asynchronous job",
)
def get_job(job_id: str, account: AccountDep, service: ServiceDep) -> Any:
    """The job's status; its result (same shape as the synchronous response) or its error.

    Download URLs are signed afresh on every poll (valid 24 h) while the outputs are kept.
    """
    return FastJSONResponse(service.job_document(account.id, job_id))

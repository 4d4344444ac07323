"""``POST /v1/phota/remix`` and ``GET /v1/phota/jobs/{job_id}``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.background import BackgroundTask

from photoremix.api.deps import AccountDep, ServiceDep
from photoremix.api.json_codec import FastJSONResponse, FastJSONRoute
from photoremix.api.schemas import ErrorBody, JobDocument, JobHandle, RemixBody, RemixResponse
from photoremix.services.remix import (
    Accepted,
    Pending,
    RemixService,
    RemixSubmission,
    Replayed,
)

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
async def remix(body: RemixBody, request: Request, account: AccountDep, service: ServiceDep) -> Any:
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
    # Validation, decoding and the database work block: off the event loop.
    outcome = await run_in_threadpool(service.submit, account, submission, base_url)
    if isinstance(outcome, Accepted):
        return FastJSONResponse(
            {"job_id": outcome.job_id, "poll_url": outcome.poll_url}, status_code=202
        )
    if isinstance(outcome, Replayed):
        return FastJSONResponse(outcome.response)
    assert isinstance(outcome, Pending)
    # Built by the service from plain types: skip a second validation of megabytes of base64.
    # The job's buffers are freed after the response is sent (see Pending).
    return FastJSONResponse(
        await _result(service, outcome), background=BackgroundTask(outcome.buffers.clear)
    )


async def _result(service: RemixService, pending: Pending) -> dict[str, Any]:
    """The sync response, awaited on the event loop rather than in a blocked thread (a
    thread per waiting request would cap concurrent requests at the thread pool's size).

    At the deadline, ``RemixService.wait`` decides: it fails and refunds the job, or takes
    the result that arrived in the same instant.
    """
    job = asyncio.wrap_future(pending.future)
    try:
        # shield: a timeout here must not cancel the job; RemixService.wait settles it.
        return await asyncio.wait_for(
            asyncio.shield(job), timeout=max(0.0, pending.deadline - time.monotonic())
        )
    except TimeoutError:
        # The job's own outcome, if it still comes, is settled by ``wait``: mark it seen.
        job.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await run_in_threadpool(service.wait, pending)


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

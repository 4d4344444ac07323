"""Signed downloads: ``GET /v1/phota/files/{key}?expires=...&signature=...``.

No API key: the signature is the permission (the link can be handed to a browser or a CDN).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from photoremix.api.deps import ServiceDep
from photoremix.api.errors import ApiError
from photoremix.storage import ObjectNotFound, SignatureError, SignatureExpired

router = APIRouter(prefix="/v1/phota", tags=["Downloads"])


@router.get(
    "/files/{key:path}",
    summary="Download an output through a signed URL",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The image."},
        403: {"description": "The link is expired, altered or malformed."},
        404: {"description": "The output is no longer kept (retention period passed)."},
    },
)
def download(
    key: str,
    request: Request,
    service: ServiceDep,
    expires: Annotated[str, Query(description="Unix time the link stops working.")] = "",
    signature: Annotated[str, Query(description="HMAC-SHA256 of the path and expiry.")] = "",
) -> Response:
    try:
        service.signer.verify(request.url.path, expires, signature)
    except SignatureExpired as error:
        raise ApiError(403, "link_expired", str(error)) from None
    except SignatureError as error:
        raise ApiError(403, "link_invalid", str(error)) from None
    try:
        stored = service.storage.get(key)
    except ObjectNotFound:
        raise ApiError(
            404, "output_gone", "This output is no longer kept; request the remix again."
        ) from None
    return Response(
        stored.data,
        media_type=stored.content_type,
        headers={"Cache-Control": "private, max-age=86400"},
    )

"""Profiles (trained identities): add, list, status, picture, delete.

A profile that belongs to another account answers 404, exactly like one that never existed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from photoremix.api.deps import AccountDep
from photoremix.api.json_codec import FastJSONRoute
from photoremix.api.schemas import (
    AddProfileBody,
    AddProfileResponse,
    DeleteProfileResponse,
    ErrorBody,
    ProfileIdsResponse,
    ProfileStatusResponse,
    ProfileSummary,
)
from photoremix.services.profiles import ProfileFieldError, ProfileService

router = APIRouter(prefix="/v1/phota/profiles", tags=["Profiles"], route_class=FastJSONRoute)


async def get_profiles(request: Request) -> ProfileService:
    # async: FastAPI would run a plain function in its thread pool, a hand-off per request.
    return request.app.state.profiles  # type: ignore[no-any-return]


ProfilesDep = Annotated[ProfileService, Depends(get_profiles)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The request body is not JSON."},
    401: {"model": ErrorBody, "description": "Invalid API key in the X-API-Key header."},
    402: {"model": ErrorBody, "description": "Insufficient prepaid credit balance."},
    403: {"model": ErrorBody, "description": "Missing X-API-Key header (no API key provided)."},
    404: {"model": ErrorBody, "description": "No profile with this id in your account."},
    409: {
        "model": ErrorBody,
        "description": "The profile is not READY (still training, or ERROR).",
    },
    413: {"model": ErrorBody, "description": "Request body larger than the server's limit."},
    503: {"model": ErrorBody, "description": "Too many profiles waiting to be trained; retry."},
}


@router.post(
    "/add",
    response_model=AddProfileResponse,
    responses={k: _ERRORS[k] for k in (400, 401, 402, 403, 413, 503)},
    summary="Create a new profile from image URLs",
)
def add_profile(
    body: AddProfileBody, account: AccountDep, profiles: ProfilesDep
) -> AddProfileResponse:
    """Start training a profile and return its id at once; poll its status until READY.

    A photo count outside the tier's range (standard 10-50, fast 5-10 by default) is a 422
    naming `image_urls`, like every other invalid field. Photos that cannot be fetched,
    decoded or used are reported later in the profile's status message, by position.
    """
    try:
        profile_id = profiles.add_profile(account, body.image_urls, body.training_tier, body.tag)
    except ProfileFieldError as error:
        # The same 422 body FastAPI gives for the schema's own checks.
        problem = {"loc": ("body", error.field), "msg": error.detail, "type": "value_error"}
        raise RequestValidationError([problem]) from None
    return AddProfileResponse(profile_id=profile_id)


@router.get(
    "/ids",
    response_model=ProfileIdsResponse,
    responses={k: _ERRORS[k] for k in (401, 403)},
    summary="List your profiles, optionally by tag",
)
def list_profiles(
    account: AccountDep,
    profiles: ProfilesDep,
    tag: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            description="Filter profiles by tag. Omit to return all profiles.",
        ),
    ] = None,
) -> ProfileIdsResponse:
    """Every profile of the account (oldest first), each as `{profile_id, status, tag,
    created_at}`: the hosted API does not show its element type, so this server returns
    objects rather than bare ids."""
    return ProfileIdsResponse(
        profiles=[
            ProfileSummary(
                profile_id=info.profile_id,
                status=info.status,  # type: ignore[arg-type]
                tag=info.tag,
                created_at=info.created_at.isoformat(),
            )
            for info in profiles.list_ids(account, tag)
        ]
    )


@router.get(
    "/{profile_id}/status",
    response_model=ProfileStatusResponse,
    responses={k: _ERRORS[k] for k in (401, 403, 404)},
    summary="Training status of a profile",
)
def profile_status(
    profile_id: str, account: AccountDep, profiles: ProfilesDep
) -> ProfileStatusResponse:
    """VALIDATING -> QUEUING -> IN_PROGRESS -> READY, or ERROR with a message naming each
    photo that failed and why."""
    info = profiles.status(account, profile_id)
    return ProfileStatusResponse(
        profile_id=info.profile_id,
        status=info.status,  # type: ignore[arg-type]
        message=info.message,
    )


@router.get(
    "/{profile_id}/profile_picture",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The profile picture (JPEG)."},
        **{k: _ERRORS[k] for k in (401, 403, 404, 409)},
    },
    summary="The profile picture, as a JPEG image",
)
def profile_picture(profile_id: str, account: AccountDep, profiles: ProfilesDep) -> Response:
    """The best face crop of the subject, chosen in training. 409 until the profile is READY."""
    return Response(
        profiles.picture(account, profile_id),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, no-store"},  # a face: keep it out of caches
    )


@router.delete(
    "/{profile_id}",
    response_model=DeleteProfileResponse,
    responses={k: _ERRORS[k] for k in (401, 403, 404)},
    summary="Delete a profile and all its data",
)
def delete_profile(
    profile_id: str, account: AccountDep, profiles: ProfilesDep
) -> DeleteProfileResponse:
    """Permanently delete the profile: its photos, model and picture. A profile deleted
    before it is READY has its training price refunded."""
    profiles.delete(account, profile_id)
    return DeleteProfileResponse(profile_id=profile_id, status="ok")

"""Request dependencies: the service objects and the caller's account."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from photoremix.api.errors import ApiError
from photoremix.persistence.models import Account
from photoremix.services.accounts import RevokedKey, UnknownKey, authenticate
from photoremix.services.remix import RemixService

# Named like the hosted API's security scheme ("APIKeyHeader").
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Your API key (create one with `photoremix keys create`).",
)


async def get_service(request: Request) -> RemixService:
    # async: FastAPI would run a plain function in its thread pool, a hand-off per request.
    return request.app.state.service  # type: ignore[no-any-return]


def current_account(
    service: Annotated[RemixService, Depends(get_service)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Account:
    """The account owning the X-API-Key: 403 when the header is missing, 401 when invalid."""
    if not api_key:
        raise ApiError(403, "missing_api_key", "Missing X-API-Key header (no API key provided).")
    with service.sessions() as session:
        try:
            return authenticate(session, api_key)
        except RevokedKey:
            raise ApiError(
                401, "revoked_api_key", "This API key was revoked; use another key."
            ) from None
        except UnknownKey:
            raise ApiError(
                401, "invalid_api_key", "Invalid API key in the X-API-Key header."
            ) from None


ServiceDep = Annotated[RemixService, Depends(get_service)]
AccountDep = Annotated[Account, Depends(current_account)]

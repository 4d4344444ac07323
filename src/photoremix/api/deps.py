"""Request dependencies: the service objects and the caller's account.

The account behind ``X-API-Key`` is looked up while the request body is still arriving:
``middleware.AccountLookupMiddleware`` starts the lookup (``start_account_lookup``, a
database query on a thread) as soon as the headers are in, and ``current_account`` awaits
it. For a remix, whose body is megabytes of base64, the lookup then costs no time (about
1.5 ms with its thread hand-offs if done after the body).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from photoremix.api.errors import ApiError
from photoremix.persistence.models import Account
from photoremix.services.accounts import RevokedKey, UnknownKey, authenticate
from photoremix.services.remix import RemixService

API_KEY_HEADER = "X-API-Key"
ACCOUNT_LOOKUP = "account_lookup"  # scope["state"] key: (key, future of its account)

# Named like the hosted API's security scheme ("APIKeyHeader").
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Your API key (create one with `photoremix keys create`).",
)


async def get_service(request: Request) -> RemixService:
    # async: FastAPI would run a plain function in its thread pool, a hand-off per request.
    return request.app.state.service  # type: ignore[no-any-return]


async def current_account(
    request: Request, api_key: Annotated[str | None, Security(api_key_header)]
) -> Account:
    """The account owning the X-API-Key: 403 when the header is missing, 401 when invalid."""
    if not api_key:
        raise ApiError(403, "missing_api_key", "Missing X-API-Key header (no API key provided).")
    started = getattr(request.state, ACCOUNT_LOOKUP, None)
    if started is not None and started[0] == api_key:
        lookup = started[1]
    else:  # the middleware did not start it (it is not installed)
        lookup = start_account_lookup(request.app.state.service, api_key)
    try:
        return await lookup
    except RevokedKey:
        raise ApiError(
            401, "revoked_api_key", "This API key was revoked; use another key."
        ) from None
    except UnknownKey:
        raise ApiError(401, "invalid_api_key", "Invalid API key in the X-API-Key header.") from None


def start_account_lookup(service: RemixService, key: str) -> asyncio.Future[Account]:
    """The account of ``key``, looked up on a thread (raises UnknownKey or RevokedKey)."""
    future = asyncio.get_running_loop().run_in_executor(None, _look_up, service, key)
    # A request refused before it needs its account (bad JSON, no such route) never awaits
    # the lookup: consume its error so that it is not reported as unretrieved.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


def _look_up(service: RemixService, key: str) -> Account:
    with service.sessions() as session:
        return authenticate(session, key)


ServiceDep = Annotated[RemixService, Depends(get_service)]
AccountDep = Annotated[Account, Depends(current_account)]

"""JSON in and out through pydantic-core's Rust codec.

A 2K remix in ``bytes`` mode carries megabytes of base64 each way: the standard library's
``json`` takes ~5 ms to parse such a request and ~4 ms to write such a response, which is
most of what the service adds around the work itself (issue 3 asks for under 15 ms).
``pydantic_core.from_json`` / ``to_json`` do the same in well under a millisecond.

Behaviour stays the standard one: a body the fast parser refuses is parsed again with
``json`` (via Starlette), so malformed, non-UTF-8 or UTF-16 bodies get exactly the errors
and results they always did.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` written by pydantic-core: compact UTF-8, NaN and infinities as null
    (the standard library would refuse them with a 500)."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content, inf_nan_mode="null")


class FastJSONRequest(Request):
    """A request whose ``json()`` tries pydantic-core first."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError:
                return await super().json()  # the standard parser's result or error
        return self._json


class FastJSONRoute(APIRoute):
    """Route class for routers whose bodies can be large (``APIRouter(route_class=...)``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fast_json_handler(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive))

        return fast_json_handler

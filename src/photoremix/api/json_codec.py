"""JSON in and out through Rust codecs.

A 2K remix in ``bytes`` mode carries megabytes of base64 each way: the standard library's
``json`` takes ~5 ms to parse such a request and ~4 ms to write such a response, which is
most of what the service adds around the work itself (issue 3 asks for under 15 ms).
Measured on a 3.9 MB request and a 1.5 MB response, the fastest of each direction is
used: ``pydantic_core.from_json`` parses in 0.5 ms (orjson 3.3 ms), ``orjson.dumps`` writes
in 0.1 ms (pydantic-core 0.8 ms).

Behaviour stays the standard one: a body the fast parser refuses is parsed again with
``json`` (via Starlette), so malformed, non-UTF-8 or UTF-16 bodies get exactly the errors
and results they always did; a value orjson cannot write is written by pydantic-core.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pydantic_core
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` written by orjson: compact UTF-8, NaN and infinities as null (the
    standard library would refuse them with a 500); types orjson does not know, and
    datetimes, are written as pydantic-core writes them."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, default=_jsonable, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits
            return pydantic_core.to_json(content, inf_nan_mode="null")


# Non-str keys as str (as pydantic-core does); datetimes through ``_jsonable`` so that UTC is
# written "Z" as everywhere else in the API.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _jsonable(value: Any) -> Any:
    return pydantic_core.to_jsonable_python(value)


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

"""ASGI middleware: request ids, metrics and access logs, the request-body limit, and the
early start of the API key's account lookup.

Written as plain ASGI callables rather than Starlette's ``BaseHTTPMiddleware``, which
buffers and re-wraps every request: these only look at the messages passing through.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from photoremix.api import deps
from photoremix.observability import Metrics, request_id_var

log = logging.getLogger("photoremix.access")


class RequestContextMiddleware:
    """Gives every request an id (``X-Request-Id`` on every response), counts and logs it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        status_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, status_started
            if message["type"] == "http.response.start":
                status, status_started = message["status"], True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette's outermost error middleware would answer without our header.
            log.exception("unhandled error")
            if status_started:
                raise
            await _internal_error(send, request_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={"route": route, "status": status, "seconds": round(elapsed, 4)},
            )
            request_id_var.reset(token)


async def _internal_error(send: Send, request_id: str) -> None:
    body = json.dumps(
        {
            "detail": "Internal error. Quote the request_id when reporting it.",
            "code": "internal_error",
            "request_id": request_id,
        }
    ).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"x-request-id", request_id.encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Answers 413 when a request body is larger than ``max_bytes``.

    Refuses on ``Content-Length`` before reading anything, and counts a streamed body as it
    arrives, so an oversized upload is never held in memory whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app while it reads the body: answered by the
                    # HTTPException handler like any other error.
                    raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        state: dict[str, Any] = scope.get("state", {})
        body = json.dumps(
            {
                "detail": _too_large(self.max_bytes),
                "code": "body_too_large",
                "request_id": state.get("request_id", ""),
            }
        ).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large(max_bytes: int) -> str:
    return (
        f"The request body is larger than the limit of {max_bytes} bytes. "
        "Send images as URLs, or smaller images (at most 4096 px are used)."
    )


class AccountLookupMiddleware:
    """Starts looking up the account of a request's X-API-Key as soon as its headers
    arrive, while the body is still coming (see ``deps``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = _header(scope, _API_KEY_HEADER)
            service = getattr(scope["app"].state, "service", None)
            if key and service is not None:
                lookup = deps.start_account_lookup(service, key)
                scope.setdefault("state", {})[deps.ACCOUNT_LOOKUP] = (key, lookup)
        await self.app(scope, receive, send)


_API_KEY_HEADER = deps.API_KEY_HEADER.lower()


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, "content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _header(scope: Scope, name: str) -> str | None:
    """The value of header ``name`` (lower case) in an ASGI scope, or None."""
    wanted = name.encode("latin-1")
    for header, value in scope.get("headers", []):
        if header == wanted:
            return bytes(value).decode("latin-1")
    return None

"""Every error the API answers with is JSON ``{"detail", "code", "request_id"}``.

Validation errors (422) keep FastAPI's list of ``{"loc", "msg", "type"}`` in ``detail`` so
existing clients can read them, plus ``code`` and ``request_id``. A body that is not JSON
at all is a 400, not a 422: there is nothing to validate.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from photoremix.api.json_codec import FastJSONResponse
from photoremix.services.remix import Busy, ServiceError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as-is: status, machine code, human detail and extra headers."""

    def __init__(
        self, status_code: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    request: Request,
    status_code: int,
    code: str,
    detail: Any,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"detail": detail, "code": code, "request_id": request_id_of(request)}
    return FastJSONResponse(body, status_code=status_code, headers=headers)


# FastAPI's answer when the body cannot even be decoded as text (e.g. not UTF-8).
_FASTAPI_BODY_ERROR = "There was an error parsing the body"

_STATUS_CODES = {
    400: "bad_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(request, error.status_code, error.code, error.detail, error.headers)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(Busy.retry_after_s)} if isinstance(error, Busy) else None
        return error_response(request, error.status_code, error.code, error.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [_clean(problem) for problem in error.errors()]
        not_json = [p for p in problems if p["type"] == "json_invalid"]
        if not_json:
            where = not_json[0].get("ctx", {}).get("error", "")
            detail = f"The request body is not valid JSON ({where}). Send a JSON object."
            return error_response(request, 400, "invalid_json", detail.replace(" ()", ""))
        return error_response(request, 422, "validation_error", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == _FASTAPI_BODY_ERROR:
            detail = (
                "The request body is not valid JSON (it is not UTF-8 text). Send a JSON object."
            )
            return error_response(request, 400, "invalid_json", detail)
        code = _STATUS_CODES.get(error.status_code, "http_error")
        return error_response(request, error.status_code, code, error.detail, error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        detail = "Internal error. Quote the request_id when reporting it."
        return error_response(request, 500, "internal_error", detail)


def _clean(problem: dict[str, Any]) -> dict[str, Any]:
    """A validation problem without the offending input (it can be megabytes of base64)."""
    cleaned = {key: problem[key] for key in ("loc", "msg", "type") if key in problem}
    context = problem.get("ctx")
    if context:
        cleaned["ctx"] = {key: str(value) for key, value in context.items()}
    return cleaned

"""Liveness, readiness and Prometheus metrics (no API key: for the operator's tooling)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from photoremix.api.deps import ServiceDep

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The service can take remixes",
    responses={503: {"description": "Not ready: the body lists the problems."}},
)
def readyz(service: ServiceDep) -> JSONResponse:
    """200 when the database answers and the worker pool has room; else 503 with reasons."""
    problems: list[str] = []
    try:
        with service.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as error:  # any database failure means "not ready"
        problems.append(f"database: {error.__class__.__name__}")
    if service.pool.pending >= service.pool.capacity:
        problems.append("worker pool full")
    status = 503 if problems else 200
    return JSONResponse(
        {
            "status": "ready" if not problems else "not ready",
            "problems": problems,
            "queue_depth": service.pool.queue_depth,
        },
        status_code=status,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request, service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

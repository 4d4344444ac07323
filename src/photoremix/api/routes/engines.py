"""``GET /v1/engines`` (extension): which engines this server can render with."""

from __future__ import annotations

from fastapi import APIRouter

from photoremix.api.deps import AccountDep, ServiceDep
from photoremix.api.schemas import EngineInfo, EnginesResponse, ErrorBody
from photoremix.engines import ENGINE_NAMES, engine_problem

router = APIRouter(
    prefix="/v1",
    tags=["Engines"],
    responses={
        401: {"model": ErrorBody, "description": "Invalid API key in the X-API-Key header."},
        403: {"model": ErrorBody, "description": "Missing X-API-Key header (no API key provided)."},
    },
)


@router.get("/engines", response_model=EnginesResponse, summary="Engines and their readiness")
def list_engines(account: AccountDep, service: ServiceDep) -> EnginesResponse:
    """Every known engine: enabled by the operator, started, the default, or why not."""
    settings = service.settings
    infos = []
    for name in ENGINE_NAMES:
        enabled = name in settings.engines
        ready = name in service.engines
        detail = None
        if not enabled:
            problem = engine_problem(name, settings)
            detail = "not enabled (PHOTOREMIX_ENGINES)" + (f"; {problem}" if problem else "")
        infos.append(
            EngineInfo(
                name=name,
                enabled=enabled,
                ready=ready,
                default=name == settings.default_engine,
                detail=detail,
            )
        )
    return EnginesResponse(engines=infos)

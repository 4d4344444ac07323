"""The FastAPI application: wiring only (settings -> database, storage, engine, pool).

``create_app`` builds everything in the lifespan, so importing this module is cheap and
each app (tests make many) owns its database engine, pool and metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from photoremix import __version__
from photoremix.api.errors import install_error_handlers
from photoremix.api.middleware import (
    AccountLookupMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
)
from photoremix.api.routes import account, engines, files, health, profiles, remix
from photoremix.engines import Engine, EngineError, get_engine
from photoremix.observability import Metrics
from photoremix.persistence import make_engine, make_session_factory, migrate
from photoremix.services.profiles import ProfileService
from photoremix.services.remix import API_PREFIX, RemixService
from photoremix.settings import Settings, get_settings
from photoremix.storage import LocalStorage, UrlSigner
from photoremix.workers import WorkerPool

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 600.0

DESCRIPTION = """\
A self-hosted, compatible implementation of the Phota Remix API: restyle a photo to match a
reference image, keeping the people in it recognisable.

Authenticate with the `X-API-Key` header (missing: 403, invalid or revoked: 401). Every
response carries `X-Request-Id`; every error body is `{"detail", "code", "request_id"}`.
See docs/api.md in the repository for the choices made where the hosted API is silent.
"""


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The service. ``engine`` overrides the configured one (tests inject slow/failing ones)."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url is not None  # filled in by Settings
        database = make_engine(settings.database_url)
        migrate(database)
        pool = WorkerPool(settings.workers, settings.queue_size)
        sessions = make_session_factory(database)
        storage = LocalStorage(settings.data_dir.expanduser() / "files")
        service = RemixService(
            settings=settings,
            sessions=sessions,
            storage=storage,
            signer=UrlSigner(
                settings.signing_secret_bytes(),
                ttl=timedelta(hours=settings.download_url_ttl_hours),
            ),
            engines=_start_engines(settings, engine),
            pool=pool,
            metrics=metrics,
        )
        profile_service = ProfileService(settings, sessions, storage, service.fetch_policy)
        service.profiles = profile_service
        metrics.track_pool(lambda: pool.queue_depth, lambda: min(pool.pending, pool.workers))
        app.state.service = service
        app.state.profiles = profile_service
        # Profiles first: resumed remix jobs may need their models.
        for name, recovered in (
            ("profiles", profile_service.recover()),
            ("jobs", service.recover()),
        ):
            if any(recovered.values()):
                log.warning("%s left by the previous run", name, extra=recovered)
        stop_purging = threading.Event()
        purger = threading.Thread(
            target=_purge_periodically, args=(service, stop_purging), daemon=True
        )
        purger.start()
        try:
            yield
        finally:
            stop_purging.set()
            # Queued jobs stay "queued" in the database and resume on the next start.
            pool.shutdown(wait=False)
            service.close()
            profile_service.close()
            database.dispose()

    app = FastAPI(
        title="photoremix (Phota-compatible API)",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (
        remix.router,
        profiles.router,
        account.router,
        engines.router,
        files.router,
        health.router,
    ):
        app.include_router(router)
    # Outermost last: the request id exists before the body limit can refuse, and a body
    # refused on its declared length starts no account lookup.
    app.add_middleware(AccountLookupMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def _start_engines(settings: Settings, injected: Engine | None) -> dict[str, Engine]:
    """Every enabled engine, ready to run; an engine that cannot start stops the service
    with the reason (e.g. a missing weights folder), rather than failing its first request.
    ``injected`` (tests) stands in for the default engine."""
    engines = {}
    for name in settings.engines:
        if injected is not None and name == settings.default_engine:
            engines[name] = injected
            continue
        try:
            engines[name] = get_engine(name, settings)
        except EngineError as error:
            raise RuntimeError(
                f"{error}. Fix it, or remove {name} from PHOTOREMIX_ENGINES."
            ) from None
    return engines


def _purge_periodically(service: RemixService, stop: threading.Event) -> None:
    """Delete outputs past the retention period now and every PURGE_INTERVAL_S."""
    while True:
        try:
            removed = service.purge_expired_outputs()
            if removed:
                log.info("purged expired outputs", extra={"removed": removed})
        except Exception:  # keep purging later; a full disk must not kill the thread
            log.exception("purging expired outputs failed")
        if stop.wait(PURGE_INTERVAL_S):
            return

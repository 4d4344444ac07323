"""Helpers shared by the service tests: settings in a temp folder, keys, images, fake engines.

Import from tests as ``from service_support import ...`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from photoremix.api import create_app
from photoremix.engines import Engine, EngineError, ImageReport, RemixOutput, RemixRequest
from photoremix.imaging import encode_image
from photoremix.persistence import make_engine, make_session_factory, migrate
from photoremix.services.accounts import create_account
from photoremix.services.remix import RemixService
from photoremix.settings import Settings

REMIX = "/v1/phota/remix"
BALANCE = "/v1/phota/balance"
JOBS = "/v1/phota/jobs"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test service in ``data_dir`` (loopback allowed for URLs/callbacks)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "allow_hosts": ["127.0.0.1", "localhost"],
        "workers": 2,
        "queue_size": 4,
    }
    values.update(overrides)
    return Settings(**values)


def new_key(settings: Settings, credit: str = "10.00", name: str = "test") -> tuple[str, str]:
    """A new account with ``credit`` dollars: (account_id, api_key)."""
    assert settings.database_url is not None
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        with make_session_factory(engine).begin() as session:
            account, key = create_account(session, name, Decimal(credit))
            return account.id, key
    finally:
        engine.dispose()


def b64_jpeg(image: np.ndarray) -> str:
    """Raw base64 of ``image`` ((H, W, 3) uint8) encoded as JPEG."""
    return base64.b64encode(encode_image(np.ascontiguousarray(image), "jpg")).decode("ascii")


def gradient_image(height: int = 256, width: int = 320, warm: bool = False) -> np.ndarray:
    """A smooth synthetic photo stand-in: (height, width, 3) uint8."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if warm:
        channels = [200 + 50 * y / height, 120 + 60 * x / width, 40 + 30 * y / height]
    else:
        channels = [90 + 60 * x / width, 120 + 50 * y / height, 170 - 40 * x / width]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def remix_body(**fields: Any) -> dict[str, Any]:
    """A valid remix request body with small synthetic images; ``fields`` override."""
    body: dict[str, Any] = {
        "input_image": b64_jpeg(gradient_image()),
        "reference_image": b64_jpeg(gradient_image(warm=True)),
    }
    body.update(fields)
    return body


@contextmanager
def service_client(settings: Settings, engine: Engine | None = None) -> Iterator[TestClient]:
    """The app in-process (lifespan run), as a TestClient."""
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


@dataclass
class ApiUser:
    """One account's view of a service running in-process (TestClient)."""

    client: TestClient
    settings: Settings
    account_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    @property
    def service(self) -> RemixService:
        return self.client.app.state.service  # type: ignore[attr-defined,no-any-return]

    def remix(self, **fields: Any) -> httpx.Response:
        """POST a valid remix body (small synthetic images) with ``fields`` overridden."""
        return self.client.post(REMIX, json=remix_body(**fields), headers=self.headers)

    def account(self) -> dict[str, Any]:
        """GET /v1/phota/balance: the balance and the ledger rows, newest first."""
        response = self.client.get(BALANCE, headers=self.headers, params={"limit": 500})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    account_state = account

    def balance(self) -> Decimal:
        return Decimal(self.account()["balance"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"{JOBS}/{job_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_for_job(self, job_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (document := self.job(job_id))["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, f"job still {document['status']}"
            time.sleep(0.05)
        return document

    def wait_until_idle(self, timeout_s: float = 10.0) -> None:
        """Until no remix is running or queued (a worker may outlive its request)."""
        deadline = time.monotonic() + timeout_s
        while self.service.pool.pending:
            assert time.monotonic() < deadline, "the worker pool did not drain"
            time.sleep(0.02)

    def other_account(self, credit: str = "10.00") -> ApiUser:
        """A second account on the same service."""
        account_id, key = new_key(self.settings, credit, name="other")
        return ApiUser(self.client, self.settings, account_id, key)


@contextmanager
def running_service(
    data_dir: Path, engine: Engine | None = None, credit: str = "10.00", **overrides: Any
) -> Iterator[ApiUser]:
    """A service in ``data_dir`` (settings ``overrides``, FlatEngine unless ``engine``) with
    one account of ``credit`` dollars."""
    settings = make_settings(data_dir, **overrides)
    account_id, key = new_key(settings, credit)
    with service_client(settings, engine or FlatEngine()) as client:
        yield ApiUser(client, settings, account_id, key)


class FlatEngine:
    """A fast fake engine: every output is the content resized (nearest) to the output size."""

    name = "flat"

    def remix(self, request: RemixRequest, progress: Any = None) -> list[RemixOutput]:
        width, height = request.output_size
        rows = np.linspace(0, request.content.shape[0] - 1, height).astype(int)
        cols = np.linspace(0, request.content.shape[1] - 1, width).astype(int)
        image = np.ascontiguousarray(request.content[rows][:, cols])
        outputs = []
        for index in range(request.num_outputs):
            report = ImageReport(self.name, request.seed + index, index, "unchanged")
            outputs.append(RemixOutput(image=image, report=report))
            if progress is not None:
                progress(index + 1, request.num_outputs)
        return outputs


class SlowEngine(FlatEngine):
    """``FlatEngine`` that first waits ``seconds`` (or until ``release`` is set)."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.release = threading.Event()
        self.started = threading.Event()

    def remix(self, request: RemixRequest, progress: Any = None) -> list[RemixOutput]:
        self.started.set()
        self.release.wait(self.seconds)
        return super().remix(request, progress)


class FailingEngine:
    """An engine that always fails with ``EngineError``."""

    name = "failing"

    def remix(self, request: RemixRequest, progress: Any = None) -> list[RemixOutput]:
        time.sleep(0.01)
        raise EngineError("simulated engine failure")

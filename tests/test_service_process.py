"""The service as operators run it: a real ``photoremix serve`` process on loopback.

Each test drives the process with httpx over TCP, as a client of the hosted API would:
the first-start key and curl example, full remixes with real images in both response
modes (inputs inline and by URL), signed callbacks with a retry, a SIGKILL with jobs in
flight, and a clean SIGTERM. Helper servers (image files, a callback receiver) are
``http.server`` threads on 127.0.0.1, which the service allows via PHOTOREMIX_ALLOW_HOSTS.

Processes are always SIGKILLed at teardown; their stderr (the JSON logs) is printed then,
so a failing test shows what the service said (pytest shows captured output on failure).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from skimage import data

from photoremix.imaging import decode_image, encode_image, output_size_2k
from photoremix.services.webhooks import (
    SIGNATURE_HEADER,
    WebhookSignatureError,
    verify_signature,
)
from photoremix.settings import Settings
from photoremix.vision.faces import detect_faces
from service_support import b64_jpeg

REMIX = "/v1/phota/remix"
READY_TIMEOUT_S = 60.0  # imports (NumPy, OpenCV, dlib, numba) are slow on 2 busy cores
JOB_TIMEOUT_S = 90.0
T = TypeVar("T")
# The service runs with the defaults (service_environment drops the caller's settings).
DEFAULTS: dict[str, Any] = {name: info.default for name, info in Settings.model_fields.items()}


# --- the service process -----------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_environment() -> dict[str, str]:
    """This environment without the caller's service settings, plus the test settings."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PHOTOREMIX_") and name != "DATABASE_URL"
    }
    environment.update(
        PHOTOREMIX_ALLOW_HOSTS='["127.0.0.1","localhost"]',
        PHOTOREMIX_WORKERS="2",
        # Short waits so that a callback retry happens within the test.
        PHOTOREMIX_CALLBACK_FIRST_BACKOFF_S="0.2",
    )
    return environment


@dataclass
class ServiceProcess:
    """One ``photoremix serve`` subprocess; stdout and stderr go to files in ``log_dir``."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, chars: int = 6000) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def api_key(self) -> str:
        """The key from the start-up banner's ``API key: <key>`` line."""
        keys = [
            line.removeprefix("API key: ").strip()
            for line in self.stdout().splitlines()
            if line.startswith("API key: ")
        ]
        assert len(keys) == 1, f"expected one 'API key:' line in stdout:\n{self.stdout()}"
        return keys[0]

    def client(self, key: str, timeout_s: float = 120.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"X-API-Key": key},
            timeout=timeout_s,
            trust_env=False,  # never send loopback traffic to a proxy from the environment
        )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"photoremix serve exited with {self.process.returncode} before it was "
                    f"ready.\nstdout:\n{self.stdout()}\nstderr:\n{self.stderr_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2, trust_env=False).is_success:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
        raise AssertionError(
            f"photoremix serve not ready after {timeout_s:g} s.\nstderr:\n{self.stderr_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL (no cleanup in the service) and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@dataclass
class ServiceLauncher:
    """Starts service processes and kills every one of them in ``close``."""

    log_dir: Path
    started: list[ServiceProcess] = field(default_factory=list)

    def start(self, data_dir: Path, port: int | None = None) -> ServiceProcess:
        """A ready service on ``data_dir`` (a fresh free port unless ``port`` is given)."""
        port = port or free_port()
        number = len(self.started)
        stdout_path = self.log_dir / f"serve-{number}.stdout"
        stderr_path = self.log_dir / f"serve-{number}.stderr"
        command = [sys.executable, "-m", "photoremix.cli", "serve"]
        command += ["--port", str(port), "--data-dir", str(data_dir)]
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                cwd=self.log_dir,  # a relative default path must not land in the repository
                env=service_environment(),
            )
        service = ServiceProcess(process, port, data_dir, stdout_path, stderr_path)
        self.started.append(service)
        service.wait_ready()
        return service

    def close(self) -> None:
        for service in self.started:
            service.kill()
            # Shown by pytest only when the test failed: the service's own account of it.
            print(f"--- stderr of photoremix serve on port {service.port} (tail) ---")
            print(service.stderr_tail())


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[ServiceLauncher]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    started = ServiceLauncher(log_dir)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service shared by the tests that neither restart nor stop it (first start)."""
    root = tmp_path_factory.mktemp("shared-service")
    started = ServiceLauncher(root)
    try:
        yield started.start(root / "data")
    finally:
        started.close()


@pytest.fixture
def api(service: ServiceProcess) -> Iterator[httpx.Client]:
    """A client of the shared service with the key it printed."""
    with service.client(service.api_key()) as client:
        yield client
    # Shown by pytest only when the test failed.
    print(f"--- stderr of the shared photoremix serve (tail) ---\n{service.stderr_tail()}")


# --- loopback helper servers --------------------------------------------------------------


class _QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        self.server.requested_paths.append(self.path)  # type: ignore[attr-defined]


@contextmanager
def file_server(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``directory`` on 127.0.0.1: (base URL, paths requested so far)."""
    handler = partial(_QuietFileHandler, directory=str(directory))
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as server:
        server.requested_paths = []  # type: ignore[attr-defined]
        yield f"http://127.0.0.1:{server.server_port}", server.requested_paths  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ReceivedCallback:
    headers: dict[str, str]
    body: bytes
    answered: int


class _CallbackHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        receiver: CallbackReceiver = self.server.receiver  # type: ignore[attr-defined]
        status = receiver.record(dict(self.headers.items()), body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class CallbackReceiver:
    """Records every POST; answers with ``statuses`` in turn, then 200."""

    statuses: list[int]
    url: str = ""
    received: list[ReceivedCallback] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.received.append(ReceivedCallback(headers, body, status))
            return status

    def snapshot(self) -> list[ReceivedCallback]:
        with self.lock:
            return list(self.received)


@contextmanager
def callback_receiver(statuses: list[int]) -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver(list(statuses))
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), _CallbackHandler)) as server:
        server.receiver = receiver  # type: ignore[attr-defined]
        receiver.url = f"http://127.0.0.1:{server.server_port}/hooks/remix"
        yield receiver


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- small helpers -------------------------------------------------------------------------


def wait_until(
    probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.1
) -> T:
    """The first truthy value of ``probe()``, polled every ``interval_s``; AssertionError after."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def finished_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job document once the job has succeeded or failed."""

    def probe() -> dict[str, Any] | None:
        response = client.get(f"/v1/phota/jobs/{job_id}")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document if document["status"] in ("succeeded", "failed") else None

    # Polled gently: every poll takes CPU from the engine on a 2-core machine.
    return wait_until(probe, JOB_TIMEOUT_S, f"job {job_id} to finish", interval_s=0.25)


def job_status(client: httpx.Client, job_id: str) -> str:
    response = client.get(f"/v1/phota/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def download(url: str) -> httpx.Response:
    """GET a signed download URL without an API key (the signature is the permission)."""
    response = httpx.get(url, timeout=30, trust_env=False)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
    return response


def ledger(client: httpx.Client) -> tuple[Decimal, list[dict[str, Any]]]:
    """(balance, every ledger row) of the client's account."""
    response = client.get("/v1/phota/balance", params={"limit": 500})
    assert response.status_code == 200, response.text
    body = response.json()
    return Decimal(body["balance"]), body["ledger"]


def rows_for(rows: list[dict[str, Any]], job_id: str) -> dict[str, list[Decimal]]:
    """Amounts of the ledger rows referencing ``job:<job_id>``, by kind."""
    amounts: dict[str, list[Decimal]] = {}
    for row in rows:
        if row["reference"] == f"job:{job_id}":
            amounts.setdefault(row["kind"], []).append(Decimal(row["amount"]))
    return amounts


def open_reservations(rows: list[dict[str, Any]]) -> set[str]:
    """Job ids with a ``reserve`` row not yet closed by a settle or refund."""
    reserved = {row["reference"] for row in rows if row["kind"] == "reserve"}
    closed = {row["reference"] for row in rows if row["kind"] in ("settle", "refund")}
    return {reference.removeprefix("job:") for reference in reserved - closed if reference}


def database_rows(data_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of ``query`` on the service's SQLite database (read while no service runs)."""
    connection = sqlite3.connect(data_dir / "photoremix.db")
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def unsigned(document: dict[str, Any]) -> dict[str, Any]:
    """A job document with the download URLs' signatures (which depend on time) removed."""
    stripped = copy.deepcopy(document)
    if stripped.get("result"):
        stripped["result"]["download_urls"] = [
            without_query(url) for url in stripped["result"]["download_urls"]
        ]
    return stripped


def printed_curl_line(stdout: str) -> str:
    """The banner's ready-made curl command (the one that sends the example file)."""
    lines = [
        line.strip()
        for line in stdout.splitlines()
        if line.strip().startswith("curl ") and "--data-binary @" in line and "@-" not in line
    ]
    assert len(lines) == 1, f"expected one example curl line in stdout:\n{stdout}"
    return lines[0]


@dataclass(frozen=True)
class CurlRequest:
    url: str
    headers: dict[str, str]
    body_path: Path


def parse_curl(line: str) -> CurlRequest:
    """URL, ``-H`` headers and the ``--data-binary @file`` of a printed curl command."""
    words = shlex.split(line)
    assert words[0] == "curl", line
    url, headers, body_path = "", {}, None
    position = 1
    while position < len(words):
        word = words[position]
        if word == "-H":
            name, _, value = words[position + 1].partition(":")
            headers[name.strip()] = value.strip()
            position += 2
        elif word == "--data-binary":
            assert words[position + 1].startswith("@"), line
            body_path = Path(words[position + 1][1:])
            position += 2
        elif word.startswith("http"):
            url = word
            position += 1
        else:
            position += 1  # flags such as -s
    assert url and body_path is not None, line
    return CurlRequest(url, headers, body_path)


def assert_jpeg_download(url: str) -> np.ndarray:
    """Download ``url``, check it is a JPEG, and return its pixels."""
    response = download(url)
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"
    return decode_image(response.content)


# --- images --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    """skimage's coffee cup (public domain): (400, 600, 3) uint8, the style reference."""
    return data.coffee()


@pytest.fixture(scope="module")
def big_input_b64() -> str:
    """A 4096 x 4096 JPEG (astronaut tiled 8 x 8) as base64: slow enough to kill mid-run."""
    return b64_jpeg(np.tile(data.astronaut(), (8, 8, 1)))


def largest_face_centre(image: np.ndarray) -> np.ndarray:
    faces = detect_faces(image)
    assert faces, "no face detected"
    left, top, right, bottom = faces[0].box
    return np.array([(left + right) / 2, (top + bottom) / 2])


# --- 1. first start: key and curl example -------------------------------------------------


def test_first_start_prints_a_working_key_and_curl_example(
    service: ServiceProcess, api: httpx.Client
) -> None:
    key = service.api_key()
    _, rows = ledger(api)  # the printed key works, on an account with the starting credit
    credits = [Decimal(row["amount"]) for row in rows if row["kind"] == "credit"]
    assert credits == [DEFAULTS["starting_credit"]]

    request = parse_curl(printed_curl_line(service.stdout()))
    assert request.url == f"{service.base_url}{REMIX}"
    assert request.headers["X-API-Key"] == key
    assert request.body_path == service.data_dir / "example-request.json"

    response = httpx.post(
        request.url,
        headers=request.headers,
        content=request.body_path.read_bytes(),
        timeout=120,
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["images"] == []
    assert len(body["download_urls"]) == 1
    output = assert_jpeg_download(body["download_urls"][0])
    assert output.shape[2] == 3 and output.size > 0


@pytest.mark.usefixtures("api")  # for its log on failure
def test_printed_curl_command_runs_as_is(service: ServiceProcess) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the printed curl command was NOT run")
    words = shlex.split(printed_curl_line(service.stdout()))
    finished = subprocess.run(words, capture_output=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr.decode(errors="replace")
    body = json.loads(finished.stdout)
    assert len(body["download_urls"]) == 1, body
    assert_jpeg_download(body["download_urls"][0])


def test_second_start_prints_the_same_key_and_creates_no_account(
    launcher: ServiceLauncher, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = launcher.start(data_dir)
    key = first.api_key()
    first.kill()

    second = launcher.start(data_dir)
    assert second.api_key() == key
    with second.client(key) as client:
        assert client.get("/v1/phota/balance").status_code == 200
    second.kill()
    assert database_rows(data_dir, "SELECT count(*) FROM accounts") == [(1,)]
    assert database_rows(data_dir, "SELECT count(*) FROM api_keys") == [(1,)]


# --- 2. full round trips with real images ------------------------------------------------


def test_bytes_round_trip_is_2k_and_keeps_the_face(
    api: httpx.Client, astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    body = {
        "input_image": b64_jpeg(astronaut),
        "reference_image": b64_jpeg(coffee),
        "response_mode": "bytes",
        "output_format": "jpg",
    }
    response = api.post(REMIX, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["download_urls"] == []
    assert len(result["images"]) == 1
    output = decode_image(base64.b64decode(result["images"][0]))

    height, width = astronaut.shape[:2]
    assert (output.shape[1], output.shape[0]) == output_size_2k(width, height)
    # The face is still there, where it was (scaled to the output's size).
    scale = output.shape[1] / width
    moved = largest_face_centre(output) / scale - largest_face_centre(astronaut)
    assert np.hypot(*moved) < 0.05 * width


def test_urls_round_trip_downloads_over_http(
    api: httpx.Client, astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    body = {
        "input_image": b64_jpeg(astronaut),
        "reference_image": b64_jpeg(coffee),
        "response_mode": "urls",
        "output_format": "png",
    }
    response = api.post(REMIX, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["images"] == []
    assert len(result["download_urls"]) == 1

    image = download(result["download_urls"][0])
    assert image.headers["content-type"] == "image/png"
    output = decode_image(image.content)
    height, width = astronaut.shape[:2]
    assert (output.shape[1], output.shape[0]) == output_size_2k(width, height)
    assert detect_faces(output)


def test_inputs_given_as_loopback_urls(
    api: httpx.Client, astronaut: np.ndarray, coffee: np.ndarray, tmp_path: Path
) -> None:
    (tmp_path / "astronaut.jpg").write_bytes(encode_image(astronaut, "jpg"))
    (tmp_path / "coffee.jpg").write_bytes(encode_image(coffee, "jpg"))
    with file_server(tmp_path) as (base, requested):
        body = {
            "input_image": f"{base}/astronaut.jpg",
            "reference_image": f"{base}/coffee.jpg",
            "response_mode": "urls",
        }
        response = api.post(REMIX, json=body)
    assert response.status_code == 200, response.text
    assert sorted(requested) == ["/astronaut.jpg", "/coffee.jpg"]
    output = assert_jpeg_download(response.json()["download_urls"][0])
    height, width = astronaut.shape[:2]
    assert (output.shape[1], output.shape[0]) == output_size_2k(width, height)


# --- 3. signed callbacks --------------------------------------------------------------------


def test_callback_is_signed_equals_the_job_and_is_retried_after_a_500(
    api: httpx.Client, astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    secret_response = api.get("/v1/phota/webhook-secret")
    assert secret_response.status_code == 200, secret_response.text
    secret = secret_response.json()["webhook_secret"]

    with callback_receiver(statuses=[500]) as receiver:
        body = {
            "input_image": b64_jpeg(astronaut),
            "reference_image": b64_jpeg(coffee),
            "response_mode": "urls",
            "async": True,
            "callback_url": receiver.url,
        }
        accepted = api.post(REMIX, json=body)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        polled = finished_job(api, job_id)

        def two_deliveries() -> list[ReceivedCallback] | None:
            received = receiver.snapshot()
            return received if len(received) >= 2 else None

        received = wait_until(two_deliveries, 30, "the callback again after the receiver's 500")

    assert [callback.answered for callback in received] == [500, 200]
    for callback in received:
        signature = callback.headers[SIGNATURE_HEADER]
        verify_signature(secret, callback.body, signature)
        with pytest.raises(WebhookSignatureError):  # the check is not vacuous
            verify_signature(secret, callback.body + b" ", signature)
    assert received[0].body == received[1].body

    delivered = json.loads(received[1].body)
    assert polled["status"] == "succeeded"
    assert unsigned(delivered) == unsigned(polled)
    assert len(delivered["result"]["download_urls"]) == 1
    assert_jpeg_download(delivered["result"]["download_urls"][0])


# --- 4. restart with jobs in flight --------------------------------------------------------


@pytest.mark.slow
def test_restart_resumes_async_job_and_refunds_interrupted_sync_one(
    launcher: ServiceLauncher, tmp_path: Path, big_input_b64: str, coffee: np.ndarray
) -> None:
    data_dir = tmp_path / "data"
    first = launcher.start(data_dir)
    key = first.api_key()
    body = {
        "input_image": big_input_b64,
        "reference_image": b64_jpeg(coffee),
        "num_output_images": 4,
        "response_mode": "urls",
    }

    sync_outcome: dict[str, Any] = {}

    def send_sync() -> None:
        try:
            with first.client(key) as sync_client:
                sync_outcome["response"] = sync_client.post(REMIX, json=body)
        except httpx.TransportError as error:
            sync_outcome["error"] = error

    sync_thread = threading.Thread(target=send_sync, daemon=True)
    with first.client(key) as client:
        sync_thread.start()
        sync_id = wait_until(
            lambda: next(iter(open_reservations(ledger(client)[1])), None),
            60,
            "the synchronous job's reservation",
        )
        wait_until(lambda: job_status(client, sync_id) == "running", 60, "sync job to run")
        accepted = client.post(REMIX, json={**body, "async": True})
        assert accepted.status_code == 202, accepted.text
        async_id = accepted.json()["job_id"]
        wait_until(lambda: job_status(client, async_id) == "running", 60, "async job to run")
        killed_at = datetime.now(UTC)
        first.kill()
    sync_thread.join(timeout=30)
    assert "error" in sync_outcome, f"the sync request finished before the kill: {sync_outcome}"

    # Both jobs were mid-run when the process died (read from its database directly).
    statuses = dict(database_rows(data_dir, "SELECT id, status FROM jobs"))
    assert statuses == {sync_id: "running", async_id: "running"}

    second = launcher.start(data_dir, port=first.port)  # same port: the job's URLs use it
    with second.client(key) as client:
        resumed = finished_job(client, async_id)
        assert resumed["status"] == "succeeded", resumed
        started_again = datetime.fromisoformat(resumed["started_at"])
        assert started_again > killed_at, "the async job was not run again after the restart"
        assert len(resumed["result"]["download_urls"]) == 4
        assert_jpeg_download(resumed["result"]["download_urls"][0])

        interrupted = client.get(f"/v1/phota/jobs/{sync_id}").json()
        assert interrupted["status"] == "failed"
        assert interrupted["error"]["code"] == "interrupted"

        balance, rows = ledger(client)

    assert balance == sum(Decimal(row["amount"]) for row in rows)
    [credit] = [Decimal(row["amount"]) for row in rows if row["kind"] == "credit"]
    charge = 4 * DEFAULTS["price_per_output"]
    assert balance == credit - charge

    async_rows = rows_for(rows, async_id)
    assert len(async_rows["reserve"]) == 1 and len(async_rows["settle"]) == 1
    assert sum(sum(amounts) for amounts in async_rows.values()) == -charge

    sync_rows = rows_for(rows, sync_id)
    assert sorted(sync_rows) == ["refund", "reserve"]
    assert sync_rows["refund"] == [-amount for amount in sync_rows["reserve"]]
    assert not open_reservations(rows)


# --- 5. clean shutdown ------------------------------------------------------------------------


def stop_with_sigterm(running: ServiceProcess, within_s: float = 10.0) -> int:
    """Send SIGTERM and return the exit status (negative: the signal that ended it)."""
    running.process.send_signal(signal.SIGTERM)
    try:
        return running.process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {within_s:g} s after SIGTERM\n{running.stderr_tail()}")


def test_sigterm_while_idle_shuts_down_gracefully(
    launcher: ServiceLauncher, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    running = launcher.start(data_dir)
    assert (data_dir / "photoremix.db-wal").exists()  # SQLite in WAL mode, open

    returncode = stop_with_sigterm(running)

    # uvicorn re-raises the SIGTERM after its shutdown; see the next test for the status.
    assert returncode in (0, -signal.SIGTERM), running.stderr_tail()
    # The lifespan shutdown closed the database: SQLite checkpoints and removes its WAL
    # when the last connection closes (a killed process leaves it behind).
    assert not (data_dir / "photoremix.db-wal").exists(), running.stderr_tail()


def test_sigterm_while_idle_exits_with_status_zero(
    launcher: ServiceLauncher, tmp_path: Path
) -> None:
    running = launcher.start(tmp_path / "data")
    assert stop_with_sigterm(running) == 0

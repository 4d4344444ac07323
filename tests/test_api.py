"""The HTTP API in-process (FastAPI's TestClient): response modes, every class of bad input,
auth and key isolation, signed download URLs, the bounded pool, metrics and OpenAPI.

Most tests use ``FlatEngine`` (fast); the real classic engine runs once per response mode.
Bad requests share one module-wide service: each refusal test checks that the caller's
balance and ledger did not move and that the service then still answers a good remix.
Billing sums are in test_api_billing.py.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from skimage import color, data

from photoremix.api import create_app
from photoremix.imaging import decode_image
from photoremix.persistence import make_engine, make_session_factory
from photoremix.services.accounts import create_key, revoke_key
from service_support import (
    BALANCE,
    JOBS,
    REMIX,
    FlatEngine,
    SlowEngine,
    b64_jpeg,
    gradient_image,
    make_settings,
    new_key,
    remix_body,
    service_client,
)
from service_support import (
    ApiUser as Api,
)
from service_support import running_service as running_api

WEBHOOK_SECRET = "/v1/phota/webhook-secret"
OPENAPI = "/v1/phota/openapi.json"
MAGIC = {"jpg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
TWO_K_AREA = 2048 * 2048


# --- a running service and one account ------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One service for the refusal tests (which must leave no trace in it)."""
    with running_api(tmp_path_factory.mktemp("shared"), credit="100.00") as running:
        yield running


def assert_refused(
    api: Api, send: Callable[[], httpx.Response], status: int, code: str
) -> httpx.Response:
    """Send a bad request and check the whole contract of a refusal.

    The answer has ``status`` and the error body ``{detail, code, request_id}`` with
    ``request_id`` equal to the X-Request-Id header; the caller's balance and ledger are
    unchanged; and the service then still answers a good remix. Returns the response, for
    checks of its ``detail``.
    """
    before = api.account_state()
    response = send()
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "code", "request_id"}
    assert body["code"] == code
    assert body["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert api.account_state() == before, "a refused request moved money"
    good = api.remix()
    assert good.status_code == 200, good.text
    assert len(good.json()["images"]) == 1
    return response


def problem_at(detail: list[dict[str, Any]], *loc: str) -> dict[str, Any]:
    """The validation problem (from a 422's ``detail`` list) located at ``loc``."""
    for problem in detail:
        if tuple(problem["loc"]) == loc:
            return problem
    raise AssertionError(f"no validation problem at {loc}: {detail}")


def wait_for_job(api: Api, job_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
    """Poll the job until it has finished; returns its document."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = api.client.get(f"{JOBS}/{job_id}", headers=api.headers)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        if document["status"] in ("succeeded", "failed"):
            return document
        assert time.monotonic() < deadline, f"job still {document['status']}"
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def image_size(encoded: bytes) -> tuple[int, int]:
    """(width, height) from the file header, without decoding 4 MP of pixels."""
    with Image.open(io.BytesIO(encoded)) as image:
        return image.size


def encoded(image: np.ndarray, pillow_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, pillow_format)
    return buffer.getvalue()


def b64(data_bytes: bytes) -> str:
    return base64.b64encode(data_bytes).decode("ascii")


def metric(text: str, sample_name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample (None when absent) in ``/metrics`` text."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(name) == value for name, value in labels.items()
            ):
                return float(sample.value)
    return None


# --- response modes ------------------------------------------------------------------------


def test_bytes_mode_fills_only_images_and_defaults_to_jpg(api: Api) -> None:
    response = api.remix(response_mode="bytes")  # no output_format: the default

    assert response.status_code == 200, response.text
    assert response.headers["X-Request-Id"]
    body = response.json()
    assert body["known_subjects"] == {"counts": {}}
    assert body["download_urls"] == []
    assert len(body["images"]) == 1
    assert base64.b64decode(body["images"][0]).startswith(MAGIC["jpg"])
    (report,) = body["reports"]
    assert report["engine"] == "flat"
    assert isinstance(report["seed"], int)
    assert report["unhandled_instructions"] == []


def test_urls_mode_fills_only_download_urls(api: Api) -> None:
    response = api.remix(response_mode="urls")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["known_subjects"] == {"counts": {}}
    assert body["images"] == []
    (url,) = body["download_urls"]
    download = api.client.get(url)  # no API key: the signature is the permission
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "image/jpeg"
    assert download.content.startswith(MAGIC["jpg"])
    assert len(body["reports"]) == 1


@pytest.mark.parametrize("response_mode", ["bytes", "urls"])
@pytest.mark.parametrize("output_format", ["jpg", "png"])
def test_outputs_are_encoded_in_the_requested_format(
    api: Api, response_mode: str, output_format: str
) -> None:
    response = api.remix(response_mode=response_mode, output_format=output_format)

    assert response.status_code == 200, response.text
    body = response.json()
    if response_mode == "bytes":
        files = [base64.b64decode(image) for image in body["images"]]
    else:
        downloads = [api.client.get(url) for url in body["download_urls"]]
        assert [d.headers["Content-Type"] for d in downloads] == [MEDIA_TYPES[output_format]]
        files = [d.content for d in downloads]
    assert len(files) == 1
    assert files[0].startswith(MAGIC[output_format])
    other = "png" if output_format == "jpg" else "jpg"
    assert not files[0].startswith(MAGIC[other])


@pytest.mark.parametrize(
    ("height", "width"),
    [(256, 256), (180, 320), (320, 180)],
    ids=["square", "wide", "tall"],
)
def test_outputs_are_2k_with_the_input_aspect_ratio(api: Api, height: int, width: int) -> None:
    response = api.remix(input_image=b64_jpeg(gradient_image(height, width)))

    assert response.status_code == 200, response.text
    out_width, out_height = image_size(base64.b64decode(response.json()["images"][0]))
    if height == width:
        assert (out_width, out_height) == (2048, 2048)
    assert abs(out_width * out_height / TWO_K_AREA - 1) <= 0.02
    assert abs(math.log((out_width / out_height) / (width / height))) < 0.01
    assert out_width % 16 == 0 and out_height % 16 == 0


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_num_output_images_gives_that_many_images_and_reports(api: Api, count: int) -> None:
    response = api.remix(num_output_images=count, seed=100)

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["images"]) == count
    assert [report["seed"] for report in body["reports"]] == [100 + i for i in range(count)]
    assert [report["variation"] for report in body["reports"]] == list(range(count))


def _mean_chroma(image: np.ndarray) -> np.ndarray:
    """Mean CIELAB (a*, b*) of an (H, W, 3) uint8 image, on every 8th pixel (plenty)."""
    lab = color.rgb2lab(image[::8, ::8])
    return lab[..., 1:].reshape(-1, 2).mean(axis=0)


@pytest.mark.parametrize(("response_mode", "output_format"), [("bytes", "jpg"), ("urls", "png")])
def test_classic_engine_round_trip(tmp_path: Path, response_mode: str, output_format: str) -> None:
    astronaut, coffee = data.astronaut(), data.coffee()
    unknown_instruction = "make it look like an oil painting"
    settings = make_settings(tmp_path)
    _, key = new_key(settings)
    with service_client(settings) as client:  # the configured engine: classic
        response = client.post(
            REMIX,
            json={
                "input_image": b64_jpeg(astronaut),
                "reference_image": b64_jpeg(coffee),
                "prompt": unknown_instruction,
                "response_mode": response_mode,
                "output_format": output_format,
                "seed": 3,
            },
            headers={"X-API-Key": key},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if response_mode == "bytes":
            assert body["download_urls"] == []
            files = [base64.b64decode(image) for image in body["images"]]
        else:
            assert body["images"] == []
            files = [client.get(url).content for url in body["download_urls"]]

    assert len(files) == 1
    assert files[0].startswith(MAGIC[output_format])
    output = decode_image(files[0])
    assert output.shape == (2048, 2048, 3)  # the astronaut is 1:1
    # The look moved: the output's colour cast is far nearer the coffee's than the input's.
    before = np.linalg.norm(_mean_chroma(astronaut) - _mean_chroma(coffee))
    after = np.linalg.norm(_mean_chroma(output) - _mean_chroma(coffee))
    assert after < 0.5 * before, (before, after)
    (report,) = body["reports"]
    assert report["engine"] == "classic"
    assert report["seed"] == 3
    assert report["unhandled_instructions"] == [unknown_instruction]
    # The seconds per stage, the service's own included: fetching / decoding the inputs,
    # recognition, and encoding the output (what benchmarks/service_overhead.py subtracts).
    for stage in ("load_inputs", "recognise", "encode", "render"):
        assert report["timings"][stage] > 0, stage


# --- bad input: each refused with the right 4xx, no money moved, still serving -------------


def test_malformed_json_is_400(shared_api: Api) -> None:
    def send() -> httpx.Response:
        return shared_api.client.post(
            REMIX,
            content=b'{"input_image": "abc",',
            headers={**shared_api.headers, "Content-Type": "application/json"},
        )

    response = assert_refused(shared_api, send, 400, "invalid_json")
    assert "not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("num_output_images", "2", "valid integer", id="count-as-string"),
        pytest.param("async", "true", "valid boolean", id="async-as-string"),
        pytest.param("num_output_images", 0, "greater than or equal to 1", id="count-0"),
        pytest.param("num_output_images", 5, "less than or equal to 4", id="count-5"),
        pytest.param("style_strength", 1.5, "less than or equal to 1", id="strength-1.5"),
        pytest.param("seed", -1, "greater than or equal to 0", id="seed-negative"),
        pytest.param("output_format", "gif", "'jpg' or 'png'", id="format-gif"),
        pytest.param("response_mode", "inline", "'bytes' or 'urls'", id="mode-inline"),
        pytest.param("input_image", "", "at least 1 character", id="empty-image"),
        pytest.param("profile_ids", "p1", "valid list", id="profile-ids-not-a-list"),
        pytest.param("colour", "warm", "Extra inputs are not permitted", id="unknown-field"),
    ],
)
def test_invalid_field_is_422_naming_it(
    shared_api: Api, field: str, value: Any, message: str
) -> None:
    def send() -> httpx.Response:
        body = remix_body(**{field: value})
        return shared_api.client.post(REMIX, json=body, headers=shared_api.headers)

    response = assert_refused(shared_api, send, 422, "validation_error")
    assert message in problem_at(response.json()["detail"], "body", field)["msg"]


@pytest.mark.parametrize(
    "missing",
    [["input_image"], ["reference_image"], ["input_image", "reference_image"]],
    ids=["input", "reference", "both"],
)
def test_missing_required_fields_are_422_naming_each(shared_api: Api, missing: list[str]) -> None:
    body = {k: v for k, v in remix_body().items() if k not in missing}

    def send() -> httpx.Response:
        return shared_api.client.post(REMIX, json=body, headers=shared_api.headers)

    detail = assert_refused(shared_api, send, 422, "validation_error").json()["detail"]
    assert len(detail) == len(missing)
    for field in missing:
        assert problem_at(detail, "body", field)["msg"] == "Field required"


@pytest.mark.parametrize(
    ("field", "value"), [("base_model", "nb2"), ("aspect_ratio", "16:9"), ("resolution", "4K")]
)
def test_fields_remix_fixes_are_refused(shared_api: Api, field: str, value: str) -> None:
    def send() -> httpx.Response:
        body = remix_body(**{field: value})
        return shared_api.client.post(REMIX, json=body, headers=shared_api.headers)

    detail = assert_refused(shared_api, send, 422, "validation_error").json()["detail"]
    (problem,) = detail
    assert f"Remix does not accept {field}" in problem["msg"]
    assert "Remove the field" in problem["msg"]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_is_413(tmp_path: Path, streamed: bool) -> None:
    # A limit a normal request (two small JPEGs) fits under, and a body three times over.
    limit = len(json.dumps(remix_body()).encode()) + 2048
    oversized = json.dumps(remix_body(prompt="x" * 100, input_image="A" * 3 * limit)).encode()
    with running_api(tmp_path, max_body_bytes=limit) as api:

        def send() -> httpx.Response:
            headers = {**api.headers, "Content-Type": "application/json"}
            if streamed:
                chunks = (oversized[i : i + 4096] for i in range(0, len(oversized), 4096))
                return api.client.post(REMIX, content=chunks, headers=headers)
            return api.client.post(REMIX, content=oversized, headers=headers)

        response = assert_refused(api, send, 413, "body_too_large")
    assert f"limit of {limit} bytes" in response.json()["detail"]
    # The streamed case really arrived without a length to refuse on up front.
    assert ("content-length" in response.request.headers) is not streamed


_SMALL = gradient_image(100, 120)
_JPEG = encoded(_SMALL, "JPEG")


@pytest.mark.parametrize(
    ("field", "value", "code", "message"),
    [
        pytest.param(
            "input_image",
            b64(b"plain text, not a picture at all " * 4),
            "image_undecodable",
            "could not be read as an image",
            id="undecodable",
        ),
        pytest.param(
            "input_image",
            b64(encoded(_SMALL, "GIF")),
            "image_unsupported_format",
            "GIF images are not supported",
            id="gif",
        ),
        pytest.param(
            "reference_image",
            b64(encoded(_SMALL, "BMP")),
            "image_unsupported_format",
            "BMP images are not supported",
            id="bmp",
        ),
        pytest.param(
            "input_image",
            b64_jpeg(gradient_image(48, 300)),
            "image_too_small",
            "at least 64 px",
            id="too-small",
        ),
        pytest.param(
            "reference_image",
            b64(_JPEG[: len(_JPEG) // 2]),
            "image_truncated",
            "incomplete",
            id="truncated",
        ),
        pytest.param("input_image", "  \n ", "image_empty", "empty", id="blank"),
        pytest.param(
            "input_image", "not*base64*at*all!", "image_bad_base64", "not valid base64", id="base64"
        ),
    ],
)
def test_bad_image_is_400_naming_the_field(
    shared_api: Api, field: str, value: str, code: str, message: str
) -> None:
    def send() -> httpx.Response:
        body = remix_body(**{field: value})
        return shared_api.client.post(REMIX, json=body, headers=shared_api.headers)

    detail = assert_refused(shared_api, send, 400, code).json()["detail"]
    assert detail.startswith(f"{field}: ")
    assert message in detail


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("http://169.254.169.254/latest/meta-data/", "link-local", id="cloud-metadata"),
        pytest.param("http://10.1.2.3/photo.jpg", "private", id="private-network"),
        pytest.param("file:///etc/passwd", "only http and https", id="file-scheme"),
        pytest.param("ftp://example.com/photo.jpg", "only http and https", id="ftp-scheme"),
        pytest.param(
            "http://user:secret@example.com/photo.jpg", "user name or password", id="credentials"
        ),
    ],
)
def test_hostile_url_is_400_naming_it(shared_api: Api, url: str, reason: str) -> None:
    def send() -> httpx.Response:
        return shared_api.client.post(
            REMIX, json=remix_body(reference_image=url), headers=shared_api.headers
        )

    detail = assert_refused(shared_api, send, 400, "image_fetch_failed").json()["detail"]
    assert detail.startswith("reference_image: ")
    assert url in detail
    assert reason in detail


def test_loopback_url_is_refused_when_not_allowlisted(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/photo.jpg"
    with running_api(tmp_path, allow_hosts=[]) as api:

        def send() -> httpx.Response:
            return api.remix(input_image=url)

        detail = assert_refused(api, send, 400, "image_fetch_failed").json()["detail"]
    assert url in detail
    assert "loopback" in detail


@pytest.mark.parametrize(
    "fields",
    [{"profile_ids": ["no-such-profile"]}, {"prompt": "warmer, [[no-such-profile]]"}],
    ids=["profile_ids", "prompt-mention"],
)
def test_unknown_profile_is_400_naming_it(shared_api: Api, fields: dict[str, Any]) -> None:
    # The identity issue: every candidate must be the caller's and READY, else 400 naming it.
    def send() -> httpx.Response:
        return shared_api.remix(**fields)

    detail = assert_refused(shared_api, send, 400, "profile_not_found").json()["detail"]
    assert "'no-such-profile'" in detail


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        pytest.param(
            {"async": True}, "invalid_request", 'needs response_mode: "urls"', id="async-bytes"
        ),
        pytest.param(
            {"callback_url": "https://example.com/hook"},
            "invalid_request",
            "only accepted with async",
            id="callback-without-async",
        ),
        pytest.param(
            {"async": True, "response_mode": "urls", "callback_url": "http://example.com/hook"},
            "invalid_callback_url",
            "http://example.com/hook: plain http is not accepted; use https",
            id="http-callback",
        ),
        pytest.param(
            {"async": True, "response_mode": "urls", "callback_url": "https://10.0.0.5/hook"},
            "invalid_callback_url",
            "https://10.0.0.5/hook",
            id="private-callback",
        ),
    ],
)
def test_invalid_combination_is_400(
    shared_api: Api, fields: dict[str, Any], code: str, message: str
) -> None:
    def send() -> httpx.Response:
        return shared_api.remix(**fields)

    detail = assert_refused(shared_api, send, 400, code).json()["detail"]
    assert message in detail


# --- auth ------------------------------------------------------------------------------------

ENDPOINTS = [
    pytest.param("POST", REMIX, id="remix"),
    pytest.param("GET", f"{JOBS}/some-job-id", id="jobs"),
    pytest.param("GET", BALANCE, id="balance"),
    pytest.param("GET", WEBHOOK_SECRET, id="webhook-secret"),
]


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = remix_body() if method == "POST" else None
    return client.request(method, path, json=body, headers=headers)


def _assert_auth_error(response: httpx.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "code", "request_id"}
    assert body["code"] == code
    assert message in body["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_missing_key_is_403(shared_api: Api, method: str, path: str) -> None:
    response = _call(shared_api.client, method, path, headers={})
    _assert_auth_error(response, 403, "missing_api_key", "Missing X-API-Key header")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_unknown_key_is_401(shared_api: Api, method: str, path: str) -> None:
    headers = {"X-API-Key": "pr_" + uuid.uuid4().hex}
    response = _call(shared_api.client, method, path, headers=headers)
    _assert_auth_error(response, 401, "invalid_api_key", "Invalid API key")


def test_each_request_looks_its_key_up_once(
    shared_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The middleware starts the lookup while the body arrives; the dependency awaits it.
    from photoremix.api import deps

    lookups: list[str] = []
    real_look_up = deps._look_up

    def counted(service: Any, key: str) -> Any:
        lookups.append(key)
        return real_look_up(service, key)

    monkeypatch.setattr(deps, "_look_up", counted)
    response = shared_api.client.get(BALANCE, headers=shared_api.headers)
    assert response.status_code == 200
    assert lookups == [shared_api.key]


def test_a_lookup_nobody_awaits_is_not_reported(
    shared_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    # Malformed JSON is refused before the account is needed: the lookup of this unknown
    # key fails with nobody awaiting it, which must not be logged as an unretrieved error.
    import gc

    headers = {"X-API-Key": "pr_" + uuid.uuid4().hex, "Content-Type": "application/json"}
    response = shared_api.client.post(REMIX, content=b'{"input_image": ', headers=headers)
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"
    time.sleep(0.2)  # the lookup finishes on its thread
    gc.collect()
    assert "never retrieved" not in caplog.text


@dataclass(frozen=True)
class RevokedKey:
    revoked: str
    live: str  # another key of the same account, still valid


@pytest.fixture(scope="module")
def revoked_key(shared_api: Api) -> RevokedKey:
    account_id, revoked = new_key(shared_api.settings, "5.00", name="revoked")
    assert shared_api.settings.database_url is not None
    database = make_engine(shared_api.settings.database_url)
    try:
        with make_session_factory(database).begin() as session:
            _, live = create_key(session, account_id)
            revoke_key(session, revoked)
    finally:
        database.dispose()
    return RevokedKey(revoked=revoked, live=live)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_revoked_key_is_401(
    shared_api: Api, revoked_key: RevokedKey, method: str, path: str
) -> None:
    live_headers = {"X-API-Key": revoked_key.live}
    before = shared_api.client.get(BALANCE, headers=live_headers).json()

    response = _call(shared_api.client, method, path, headers={"X-API-Key": revoked_key.revoked})

    _assert_auth_error(response, 401, "revoked_api_key", "revoked")
    # Revoking a key leaves the account and its other keys alone; nothing was charged.
    assert shared_api.client.get(BALANCE, headers=live_headers).json() == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", OPENAPI, 200),
        ("GET", "/no/such/route", 404),
        ("DELETE", "/healthz", 405),
        ("GET", "/v1/phota/files/outputs/x/0.jpg", 403),
        ("GET", BALANCE, 403),
    ],
)
def test_every_response_has_a_request_id(
    shared_api: Api, method: str, path: str, status: int
) -> None:
    first = shared_api.client.request(method, path)
    second = shared_api.client.request(method, path)

    assert first.status_code == second.status_code == status
    assert first.headers["X-Request-Id"]
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    if status >= 400:
        assert first.json()["request_id"] == first.headers["X-Request-Id"]


def test_unexpected_error_is_500_with_a_request_id(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    _, key = new_key(settings)
    app = create_app(settings, engine=FlatEngine())
    with TestClient(app, raise_server_exceptions=False) as client:

        def broken(*args: object) -> dict[str, Any]:
            raise RuntimeError("simulated bug")

        client.app.state.service.job_document = broken  # type: ignore[attr-defined]
        response = client.get(f"{JOBS}/any", headers={"X-API-Key": key})

    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert "simulated bug" not in body["detail"]
    assert body["request_id"] == response.headers.get("X-Request-Id")


# --- key isolation -----------------------------------------------------------------------


def test_accounts_see_only_their_own_job_balance_and_secret(api: Api) -> None:
    other = api.other_account(credit="5.00")
    accepted = api.remix(**{"async": True, "response_mode": "urls"})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert wait_for_job(api, job_id)["status"] == "succeeded"

    foreign = api.client.get(f"{JOBS}/{job_id}", headers=other.headers)
    assert foreign.status_code == 404
    assert job_id in foreign.json()["detail"]

    mine, theirs = api.account_state(), other.account_state()
    assert mine["balance"] == "9.88"
    assert theirs["balance"] == "5.00"
    assert [row["kind"] for row in theirs["ledger"]] == ["credit"]
    assert all(row["reference"] != f"job:{job_id}" for row in theirs["ledger"])

    secrets = [
        api.client.get(WEBHOOK_SECRET, headers=who.headers).json()["webhook_secret"]
        for who in (api, other)
    ]
    assert all(secrets)
    assert secrets[0] != secrets[1]


def test_job_of_another_account_is_404_like_an_unknown_job(api: Api) -> None:
    accepted = api.remix(**{"async": True, "response_mode": "urls"})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    wait_for_job(api, job_id)
    other = api.other_account()
    unknown_id = str(uuid.uuid4())

    foreign = assert_refused(
        other,
        lambda: api.client.get(f"{JOBS}/{job_id}", headers=other.headers),
        404,
        "job_not_found",
    ).json()
    unknown = assert_refused(
        other,
        lambda: api.client.get(f"{JOBS}/{unknown_id}", headers=other.headers),
        404,
        "job_not_found",
    ).json()

    # Nothing tells "exists, not yours" from "does not exist".
    assert foreign["detail"].replace(job_id, "ID") == unknown["detail"].replace(unknown_id, "ID")
    assert api.client.get(f"{JOBS}/{job_id}", headers=api.headers).status_code == 200


# --- signed download URLs ----------------------------------------------------------------


def _tampered(url: str, how: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    path = parts.path
    if how == "path":
        path = path.replace("/0.jpg", "/1.jpg")  # the job's other, genuine output
    elif how == "expiry":
        query["expires"] = str(int(query["expires"]) + 3600)
    elif how == "signature":
        last = query["signature"][-1]
        query["signature"] = query["signature"][:-1] + ("0" if last != "0" else "1")
    elif how == "no-signature":
        del query["signature"]
    return parts._replace(path=path, query=urlencode(query)).geturl()


@pytest.mark.parametrize("how", ["path", "expiry", "signature", "no-signature"])
def test_tampered_download_url_is_403(api: Api, how: str) -> None:
    urls = api.remix(response_mode="urls", num_output_images=2).json()["download_urls"]
    tampered = _tampered(urls[0], how)
    assert tampered != urls[0]

    response = api.client.get(tampered)

    assert response.status_code == 403
    assert response.json()["code"] == "link_invalid"
    assert "use the URL" in response.json()["detail"]
    assert [api.client.get(url).status_code for url in urls] == [200, 200]


def test_expired_download_url_is_403(tmp_path: Path) -> None:
    with running_api(tmp_path, download_url_ttl_hours=1e-6) as api:  # 3.6 ms
        (url,) = api.remix(response_mode="urls").json()["download_urls"]
        expires = int(parse_qs(urlsplit(url).query)["expires"][0])
        # A link is valid while the clock is before `expires` (whole seconds).
        time.sleep(max(0.0, expires - time.time() + 0.05))
        response = api.client.get(url)

    assert response.status_code == 403
    assert response.json()["code"] == "link_expired"
    assert "expired" in response.json()["detail"]


def test_outputs_past_retention_are_404_after_purge(tmp_path: Path) -> None:
    # The background purger runs once at start-up (before the remix) and then every 10 min,
    # so only the explicit purge below can remove the output.
    with running_api(tmp_path, retention_hours=1e-6) as api:  # 3.6 ms
        (url,) = api.remix(response_mode="urls").json()["download_urls"]
        assert api.client.get(url).status_code == 200
        time.sleep(0.01)
        assert api.service.purge_expired_outputs() >= 1
        response = api.client.get(url)

    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "output_gone"
    assert "request the remix again" in body["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]


# --- limits, health and metrics ----------------------------------------------------------


def test_full_pool_is_503_with_retry_after_and_charges_nothing(tmp_path: Path) -> None:
    engine = SlowEngine(seconds=30)
    with running_api(tmp_path, engine=engine, workers=1, queue_size=0) as api:
        first: list[httpx.Response] = []
        running = threading.Thread(target=lambda: first.append(api.remix()))
        running.start()
        try:
            assert engine.started.wait(10)
            while_busy = api.account_state()  # the running remix's reservation is in it
            response = api.remix()
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            assert response.json()["code"] == "busy"
            assert "busy" in response.json()["detail"]
            assert api.account_state() == while_busy
            ready = api.client.get("/readyz")
            assert ready.status_code == 503
            assert "worker pool full" in ready.json()["problems"]
        finally:
            engine.release.set()
            running.join(10)
        assert [r.status_code for r in first] == [200]
        wait_until(lambda: api.client.get("/readyz").status_code == 200)
        reserves = [row for row in api.account_state()["ledger"] if row["kind"] == "reserve"]
        assert len(reserves) == 1


def test_jobs_start_running_when_a_worker_is_free_else_queued(tmp_path: Path) -> None:
    engine = SlowEngine(seconds=30)
    with running_api(tmp_path, engine=engine, workers=1, queue_size=2) as api:
        try:
            first = api.remix(response_mode="urls", **{"async": True}).json()["job_id"]
            assert engine.started.wait(10)
            running = api.job(first)
            # Created running (the worker was free), with its start time.
            assert running["status"] == "running" and running["started_at"] is not None
            second = api.remix(response_mode="urls", **{"async": True}).json()["job_id"]
            queued = api.job(second)
            assert queued["status"] == "queued" and queued["started_at"] is None
            # A bad image after the place was taken gives the place back.
            bad = api.remix(input_image="bm90IGFuIGltYWdl")
            assert bad.status_code == 400, bad.text
            assert api.service.pool.pending == 2
        finally:
            engine.release.set()
        for job_id in (first, second):
            document = api.wait_for_job(job_id)
            assert document["status"] == "succeeded"
            assert document["created_at"] <= document["started_at"] <= document["finished_at"]
        api.wait_until_idle()


def test_healthz_and_readyz_answer_200_when_idle(shared_api: Api) -> None:
    health = shared_api.client.get("/healthz")
    ready = shared_api.client.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["problems"] == []


def test_metrics_count_requests_by_route_engine_time_and_billed_outputs(api: Api) -> None:
    assert api.remix(num_output_images=2).status_code == 200
    job_id = str(uuid.uuid4())
    assert api.client.get(f"{JOBS}/{job_id}", headers=api.headers).status_code == 404

    text = api.client.get("/metrics").text

    requests = "photoremix_http_requests_total"
    assert metric(text, requests, route=REMIX, method="POST", status="200") == 1
    assert metric(text, requests, route=JOBS + "/{job_id}", method="GET", status="404") == 1
    assert job_id not in text  # route templates, not raw paths
    assert metric(text, "photoremix_queue_depth") == 0
    engine_seconds = metric(text, "photoremix_engine_seconds_total", engine="flat")
    assert engine_seconds is not None and engine_seconds > 0
    assert metric(text, "photoremix_outputs_billed_total", price="plain") == 2


def test_queue_depth_gauge_counts_waiting_remixes(tmp_path: Path) -> None:
    engine = SlowEngine(seconds=30)
    with running_api(tmp_path, engine=engine, workers=1, queue_size=1) as api:
        answers: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: answers.append(api.remix())) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            assert engine.started.wait(10)
            wait_until(lambda: api.service.pool.pending == 2)
            text = api.client.get("/metrics").text
            assert metric(text, "photoremix_queue_depth") == 1
            assert metric(text, "photoremix_remixes_running") == 1
        finally:
            engine.release.set()
            for thread in threads:
                thread.join(10)
        assert [r.status_code for r in answers] == [200, 200]
        assert metric(api.client.get("/metrics").text, "photoremix_queue_depth") == 0


# --- OpenAPI -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(shared_api: Api) -> dict[str, Any]:
    response = shared_api.client.get(OPENAPI)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_openapi_lists_the_paths_and_the_api_key_scheme(openapi: dict[str, Any]) -> None:
    for path in (REMIX, JOBS + "/{job_id}", WEBHOOK_SECRET, BALANCE):
        assert path in openapi["paths"]
    scheme = openapi["components"]["securitySchemes"]["APIKeyHeader"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert {"APIKeyHeader": []} in openapi["paths"][REMIX]["post"]["security"]
    remix_body_fields = set(openapi["components"]["schemas"]["RemixBody"]["properties"])
    assert remix_body_fields >= {
        "input_image", "reference_image", "profile_ids", "prompt", "num_output_images",
        "output_format", "response_mode", "async", "callback_url", "client_request_id",
    }  # fmt: skip


# FastAPI's own validation-error schemas are not ours to document.
_FRAMEWORK_SCHEMAS = {"HTTPValidationError", "ValidationError"}


def test_openapi_describes_every_property(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert {"RemixBody", "RemixResponse", "JobDocument", "LedgerRow"} <= set(schemas)
    undescribed = [
        f"{schema}.{name}"
        for schema, spec in schemas.items()
        if schema not in _FRAMEWORK_SCHEMAS
        for name, field in spec.get("properties", {}).items()
        if not field.get("description")
    ]
    assert undescribed == []


def test_engines_lists_readiness_and_an_unavailable_engine_is_400(shared_api: Api) -> None:
    response = shared_api.client.get("/v1/engines", headers=shared_api.headers)
    assert response.status_code == 200, response.text
    engines = {info["name"]: info for info in response.json()["engines"]}
    assert set(engines) == {"classic", "gemini", "qwen"}
    assert engines["classic"]["enabled"] and engines["classic"]["ready"]
    assert engines["classic"]["default"]
    assert not engines["gemini"]["enabled"] and not engines["gemini"]["ready"]
    assert "PHOTOREMIX_ENGINES" in engines["gemini"]["detail"]

    for name in ("gemini", "no-such-engine"):
        detail = assert_refused(
            shared_api, lambda name=name: shared_api.remix(engine=name), 400, "engine_unavailable"
        ).json()["detail"]
        assert repr(name) in detail and "available: classic" in detail
    assert shared_api.client.get("/v1/engines").status_code == 403


def test_an_enabled_engine_that_cannot_start_stops_the_service(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, engines=["classic", "gemini"])  # no Gemini key
    with pytest.raises(RuntimeError, match="PHOTOREMIX_GEMINI_API_KEY"), service_client(settings):
        pass

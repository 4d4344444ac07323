"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis, in-process over ASGI).

Schemathesis reads ``/v1/phota/openapi.json`` from the app and turns every operation into a
Hypothesis strategy of requests: *positive* ones (valid for the schema) and *negative* ones
(wrong types, missing fields, broken JSON, ...). The properties checked:

1. With a valid key, no generated request to any operation gets a 5xx, and every answer
   conforms to the document: the status code is declared, the content type and body match
   it, and a request the schema forbids is refused with a 4xx.
2. Schema-valid remix bodies carrying real images are accepted (200 sync, 202 async), give
   exactly ``num_output_images`` outputs in the chosen field, and their async jobs succeed.
3. Without a key, with an empty, unknown or revoked one, every operation that needs a key
   answers 403 or 401 with the error body, never 5xx.

Random strings are almost never images, so the remix fuzz also swaps in image texts: valid
ones (raw base64 JPEG, PNG data URI, line-wrapped WebP) and hostile but well-formed ones
(truncated, too small, GIF, refused URLs), so the decoding and fetching paths are fuzzed too.

Each property runs a fixed, derandomised number of examples (a few hundred in all, well
under a minute on two cores) against a service with ``FlatEngine``, so accepted remixes cost
milliseconds. The schemathesis pytest plugin ends the app's lifespan after each test; the
next request starts it again on the same database.
"""

from __future__ import annotations

import base64
import io
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import Case, GenerationMode
from schemathesis.schemas import APIOperation, BaseSchema

from photoremix.api import create_app
from photoremix.imaging import encode_image
from photoremix.persistence import make_engine, make_session_factory
from photoremix.services.accounts import create_key, revoke_key
from service_support import FlatEngine, gradient_image, make_settings, new_key

OPENAPI_PATH = "/v1/phota/openapi.json"
REMIX = "POST /v1/phota/remix"
JOB = "GET /v1/phota/jobs/{job_id}"
BALANCE = "GET /v1/phota/balance"
WEBHOOK_SECRET = "GET /v1/phota/webhook-secret"
DOWNLOAD = "GET /v1/phota/files/{key}"
ADD_PROFILE = "POST /v1/phota/profiles/add"
ENGINES = "GET /v1/engines"
PROFILE_IDS = "GET /v1/phota/profiles/ids"
PROFILE_STATUS = "GET /v1/phota/profiles/{profile_id}/status"
PROFILE_PICTURE = "GET /v1/phota/profiles/{profile_id}/profile_picture"
DELETE_PROFILE = "DELETE /v1/phota/profiles/{profile_id}"
KEY_HEADER = "X-API-Key"
# Operations that need X-API-Key (health checks, metrics and signed downloads do not).
NEEDS_KEY = (
    REMIX,
    JOB,
    BALANCE,
    WEBHOOK_SECRET,
    ADD_PROFILE,
    PROFILE_IDS,
    PROFILE_STATUS,
    PROFILE_PICTURE,
    DELETE_PROFILE,
    ENGINES,
)
T = TypeVar("T")

# Examples per operation with a valid key. Operations without parameters (healthz, ...)
# have a single possible request, which Hypothesis stops at after one example.
FUZZ_EXAMPLES = {
    REMIX: 150,
    JOB: 25,
    BALANCE: 25,
    WEBHOOK_SECRET: 5,
    DOWNLOAD: 25,
    ADD_PROFILE: 25,
    PROFILE_IDS: 15,
    PROFILE_STATUS: 15,
    PROFILE_PICTURE: 15,
    DELETE_PROFILE: 15,
    ENGINES: 5,
    "GET /healthz": 5,
    "GET /readyz": 5,
    "GET /metrics": 5,
}
ACCEPTED_REMIX_EXAMPLES = 40
AUTH_EXAMPLES = 15
JOB_WAIT_S = 60.0

# Derandomised: the same requests on every run, so CI results are stable.
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

_checks = schemathesis.checks  # the registry resolves check names on attribute access
# "Where they make sense": positive_data_acceptance is left out because a schema-valid
# body is still refused when its strings are not images (400), which is correct.
CONFORMANCE_CHECKS = [
    _checks.not_a_server_error,
    _checks.status_code_conformance,
    _checks.content_type_conformance,
    _checks.response_headers_conformance,
    _checks.response_schema_conformance,
    _checks.negative_data_rejection,
]
# Without a valid key: /balance and /webhook-secret do not declare 401/403 yet (see
# test_every_operation_needing_a_key_documents_401_and_403), so no status conformance here.
AUTH_CHECKS = [
    _checks.not_a_server_error,
    _checks.content_type_conformance,
    _checks.response_schema_conformance,
]


# --- the service under test ----------------------------------------------------------------


@dataclass(frozen=True)
class FuzzTarget:
    """The app's OpenAPI schema (bound to the app) and keys of a well-funded account."""

    schema: BaseSchema
    api_key: str
    revoked_key: str

    def operation(self, label: str) -> APIOperation:
        found = self.schema.find_operation_by_label(label)
        assert found is not None, f"{label} is not in the OpenAPI document"
        return found


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> FuzzTarget:
    service_settings = make_settings(
        tmp_path_factory.mktemp("fuzz"),
        # Input handling is under test, not capacity: accepted async remixes never meet a
        # full queue (503), URL fetches to closed ports fail fast, a callback is tried once.
        queue_size=200,
        fetch_timeout_s=2.0,
        callback_attempts=1,
    )
    # 1000 dollars: every accepted fuzz remix is paid for (at most 0.60 each), never a 402.
    account_id, api_key = new_key(service_settings, credit="1000.00")
    app = create_app(service_settings, engine=FlatEngine())
    # An explicit config: no schemathesis.toml is looked for, and its seed is fixed.
    schema = schemathesis.openapi.from_asgi(OPENAPI_PATH, app, config=schemathesis.Config(seed=3))
    return FuzzTarget(
        schema=schema,
        api_key=api_key,
        revoked_key=_revoked_key(service_settings.database_url, account_id),
    )


def _revoked_key(database_url: str | None, account_id: str) -> str:
    """A second key of the account, revoked: it must get 401 like an unknown one."""
    assert database_url is not None
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine).begin() as session:
            _, key = create_key(session, account_id)
            revoke_key(session, key)
        return key
    finally:
        engine.dispose()


# --- image texts swapped into remix bodies ---------------------------------------------------


def _encoded(image: np.ndarray, pil_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, pil_format)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def valid_image_texts() -> list[str]:
    """Small (96x128) images in the forms a client may send; all must be accepted."""
    content = gradient_image(96, 128)
    webp = _b64(_encoded(content, "WEBP"))
    return [
        _b64(encode_image(content, "jpg")),
        "data:image/png;base64," + _b64(encode_image(content, "png")),
        "\n".join(webp[i : i + 76] for i in range(0, len(webp), 76)),  # MIME line-wrapped
    ]


def hostile_image_texts() -> list[str]:
    """Well-formed strings that are not usable images; each must be a 400, never a 5xx."""
    jpeg = encode_image(gradient_image(96, 128), "jpg")
    return [
        _b64(jpeg[: len(jpeg) // 2]),  # truncated
        _b64(encode_image(gradient_image(8, 8), "png")),  # below the 64 px minimum
        _b64(_encoded(gradient_image(96, 128), "GIF")),  # unsupported format
        "data:image/png;base64",  # a data: URI without data
        "http://10.20.30.40/photo.jpg",  # private address: refused before connecting
        "http://127.0.0.1:9/photo.jpg",  # allowed host (tests), nothing listening
        "ftp://example.com/photo.jpg",  # scheme not allowed
    ]


def with_images(case: Case, texts: list[str]) -> st.SearchStrategy[Case]:
    """``case`` with input_image and reference_image drawn from ``texts`` (JSON bodies only)."""
    if not isinstance(case.body, dict):
        return st.just(case)

    def swap(images: tuple[str, str]) -> Case:
        case.body = {**case.body, "input_image": images[0], "reference_image": images[1]}
        return case

    return st.tuples(st.sampled_from(texts), st.sampled_from(texts)).map(swap)


def made_acceptable(case: Case) -> Case:
    """A schema-valid remix body changed only where the service rightly refuses it.

    Refused by design: unknown profile ids (400, also as [[id]] in the prompt), integers
    written as floats such as 3.0 (strict types: 422), async in bytes mode (400), a
    callback_url without async (400), a client_request_id reused for another body (409),
    and an engine that is not enabled (400).
    """
    body = dict(case.body)
    for name in ("profile_ids", "callback_url", "client_request_id", "engine"):
        body.pop(name, None)
    for name in ("num_output_images", "seed"):
        if isinstance(body.get(name), float):
            body[name] = int(body[name])
    if isinstance(body.get("prompt"), str):
        body["prompt"] = body["prompt"].replace("[[", "[")  # no [[profile_id]] mentions
    if body.get("async"):
        body["response_mode"] = "urls"
    case.body = body
    return case


# --- running a property ------------------------------------------------------------------


def run_property(
    cases: st.SearchStrategy[T], max_examples: int, check: Callable[[T], None]
) -> None:
    """Run ``check`` on ``max_examples`` derandomised cases; Hypothesis shrinks a failure."""

    @settings(FUZZ_SETTINGS, max_examples=max_examples)
    @given(case=cases)
    def property_holds(case: T) -> None:
        check(case)

    property_holds()


def positive_and_negative(operation: APIOperation, **fixed: Any) -> st.SearchStrategy[Case]:
    return st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE, **fixed),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, **fixed),
    )


def get_job(target: FuzzTarget, job_id: str) -> dict[str, Any]:
    """The job document, checked against the JobDocument schema."""
    case = target.operation(JOB).Case(
        path_parameters={"job_id": job_id}, headers={KEY_HEADER: target.api_key}
    )
    response = case.call_and_validate(checks=CONFORMANCE_CHECKS)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def wait_for_jobs(target: FuzzTarget, job_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The final documents of the given async jobs (queued/running until they finish)."""
    deadline = time.monotonic() + JOB_WAIT_S
    finished: list[dict[str, Any]] = []
    for job_id in job_ids:
        while (document := get_job(target, job_id))["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"job {job_id} still {document['status']}"
            time.sleep(0.05)
        finished.append(document)
    return finished


def download(target: FuzzTarget, url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a signed download URL, through the OpenAPI operation."""
    parts = urlsplit(url)
    case = target.operation(DOWNLOAD).Case(
        path_parameters={"key": parts.path.removeprefix("/v1/phota/files/")},
        query=dict(parse_qsl(parts.query)),
    )
    response = case.call_and_validate(checks=CONFORMANCE_CHECKS)
    content_type = response.headers.get("content-type", [""])[0]
    return response.status_code, content_type, response.content


# --- the properties ------------------------------------------------------------------------


def test_fuzz_covers_every_documented_operation(target: FuzzTarget) -> None:
    # A new endpoint must get a fuzz budget (and a decision about its key) before it ships.
    operations = [result.ok() for result in target.schema.get_all_operations()]
    assert {operation.label for operation in operations} == set(FUZZ_EXAMPLES)
    needing_key = {op.label for op in operations if op.definition.raw.get("security")}
    assert needing_key == set(NEEDS_KEY)


@pytest.mark.parametrize("label", [label for label in FUZZ_EXAMPLES if label != REMIX])
def test_no_request_with_a_valid_key_gets_a_server_error(target: FuzzTarget, label: str) -> None:
    statuses: Counter[int] = Counter()

    def check(case: Case) -> None:
        statuses[case.call_and_validate(checks=CONFORMANCE_CHECKS).status_code] += 1

    operation = target.operation(label)
    run_property(
        positive_and_negative(operation, headers={KEY_HEADER: target.api_key}),
        FUZZ_EXAMPLES[label],
        check,
    )
    # The key was sent and accepted. (An unsigned download link is a 403 by design.)
    assert statuses and 401 not in statuses, statuses
    assert 403 not in statuses or label == DOWNLOAD, statuses


def test_no_remix_request_with_a_valid_key_gets_a_server_error(target: FuzzTarget) -> None:
    operation = target.operation(REMIX)
    positive = operation.as_strategy(
        generation_mode=GenerationMode.POSITIVE, headers={KEY_HEADER: target.api_key}
    )
    image_texts = valid_image_texts() + hostile_image_texts()
    cases = st.one_of(
        positive_and_negative(operation, headers={KEY_HEADER: target.api_key}),
        positive.flatmap(lambda case: with_images(case, image_texts)),
    )
    statuses: Counter[int] = Counter()
    accepted_jobs: list[str] = []

    def check(case: Case) -> None:
        response = case.call_and_validate(checks=CONFORMANCE_CHECKS)
        statuses[response.status_code] += 1
        if response.status_code == 202:
            accepted_jobs.append(response.json()["job_id"])

    run_property(cases, FUZZ_EXAMPLES[REMIX], check)

    # Not vacuous: the run reached the validator (422), the image and combination checks
    # (400) and the engine (2xx), with the key accepted throughout.
    assert {400, 422} <= statuses.keys(), statuses
    assert statuses[200] + statuses[202] > 0, statuses
    assert not statuses.keys() & {401, 403}, statuses
    # Accepted async remixes finish (also: no job outlives the test).
    for document in wait_for_jobs(target, accepted_jobs):
        assert document["status"] == "succeeded", document


def test_schema_valid_remixes_with_real_images_are_accepted(target: FuzzTarget) -> None:
    operation = target.operation(REMIX)
    texts = valid_image_texts()
    cases = (
        operation.as_strategy(
            generation_mode=GenerationMode.POSITIVE, headers={KEY_HEADER: target.api_key}
        )
        .filter(lambda case: isinstance(case.body, dict))
        .flatmap(lambda case: with_images(case, texts))
        .map(made_acceptable)
    )
    async_jobs: dict[str, dict[str, Any]] = {}
    sync_urls: list[tuple[str, str]] = []

    def check(case: Case) -> None:
        body = case.body
        response = case.call_and_validate(checks=CONFORMANCE_CHECKS)
        outputs = body.get("num_output_images", 1)
        if body.get("async"):
            assert response.status_code == 202, response.text
            async_jobs[response.json()["job_id"]] = body
            return
        assert response.status_code == 200, response.text
        result = response.json()
        filled, empty = (
            ("download_urls", "images")
            if body.get("response_mode") == "urls"
            else ("images", "download_urls")
        )
        assert len(result[filled]) == outputs
        assert result[empty] == []
        assert len(result["reports"]) == outputs
        if filled == "download_urls":
            sync_urls.append((result["download_urls"][-1], body.get("output_format", "jpg")))

    run_property(cases, ACCEPTED_REMIX_EXAMPLES, check)

    assert async_jobs and sync_urls, "the run must include async and urls-mode remixes"
    for document in wait_for_jobs(target, async_jobs):
        body = async_jobs[document["job_id"]]
        assert document["status"] == "succeeded", document
        assert len(document["result"]["download_urls"]) == body.get("num_output_images", 1)
        sync_urls.append((document["result"]["download_urls"][0], body.get("output_format", "jpg")))
    # A few downloads (each URL is signed for its own path), in the format asked for.
    for url, output_format in sync_urls[:6]:
        status, content_type, data = download(target, url)
        assert status == 200
        assert content_type == {"jpg": "image/jpeg", "png": "image/png"}[output_format]
        assert Image.open(io.BytesIO(data)).format == {"jpg": "JPEG", "png": "PNG"}[output_format]


@pytest.mark.parametrize("label", NEEDS_KEY)
def test_without_a_valid_key_every_operation_needing_one_is_refused(
    target: FuzzTarget, label: str
) -> None:
    operation = target.operation(label)
    # None: header left out. Unknown keys: a well-formed one, and whatever Hypothesis makes.
    presented_keys = st.one_of(
        st.sampled_from([None, "", target.revoked_key, "A" * 43, target.api_key[:8] + "x" * 35]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1),
    )
    cases = st.tuples(positive_and_negative(operation), presented_keys)
    statuses: Counter[int] = Counter()

    def check(case_and_key: tuple[Case, str | None]) -> None:
        case, key = case_and_key
        case.headers = {
            name: value
            for name, value in (case.headers or {}).items()
            if name.lower() != KEY_HEADER.lower()
        }
        if key is not None:
            case.headers[KEY_HEADER] = key
        response = case.call_and_validate(checks=AUTH_CHECKS)
        statuses[response.status_code] += 1
        body = response.json()
        assert set(body) == {"detail", "code", "request_id"}, body
        if response.status_code == 400 and body["code"] in ("invalid_json", "bad_request"):
            return  # a body that is not JSON is refused before the key is looked at
        assert response.status_code == (403 if not key else 401), body
        assert body["request_id"] == response.headers["x-request-id"][0]

    run_property(cases, AUTH_EXAMPLES, check)
    assert statuses[401] and statuses[403], statuses


def test_every_operation_needing_a_key_documents_401_and_403(target: FuzzTarget) -> None:
    undocumented = {
        result.ok().label: sorted({"401", "403"} - set(result.ok().definition.raw["responses"]))
        for result in target.schema.get_all_operations()
        if result.ok().definition.raw.get("security")
    }
    assert {label: codes for label, codes in undocumented.items() if codes} == {}


def test_a_body_that_is_not_utf8_gets_the_invalid_json_answer(target: FuzzTarget) -> None:
    # Found by the fuzz run without a key (a negative body of NUL bytes): not a 5xx, but
    # the message does not tell the client what to fix.
    case = target.operation(REMIX).Case(
        body=b'{"input_image": "\xff"}',
        media_type="application/json",
        headers={KEY_HEADER: target.api_key},
    )
    response = case.call()
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"

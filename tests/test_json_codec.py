"""api.json_codec: the fast JSON path parses and writes what the standard library would,
and every body the fast parser refuses gets the standard answer."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from photoremix.api.errors import install_error_handlers
from photoremix.api.json_codec import FastJSONResponse, FastJSONRoute


@pytest.fixture(scope="module")
def client() -> TestClient:
    router = APIRouter(route_class=FastJSONRoute)

    @router.post("/echo")
    def echo(body: dict[str, Any]) -> FastJSONResponse:
        return FastJSONResponse(body)

    app = FastAPI()
    app.include_router(router)
    install_error_handlers(app)
    return TestClient(app)


def post(client: TestClient, content: bytes) -> Any:
    return client.post("/echo", content=content, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "document",
    [
        {"text": "x" * 300_000, "unicode": "naïve café ✓ 😀", "escaped": 'a"b\\c\n\t'},
        {"numbers": [0, -1, 2**62, 1.5, 1e-300, 123456789.125], "nested": {"a": [None, True]}},
        {"empty": {}, "list": [], "string": ""},
    ],
    ids=["strings", "numbers", "empties"],
)
def test_round_trip_matches_the_standard_library(client: TestClient, document: Any) -> None:
    response = post(client, json.dumps(document).encode())
    assert response.status_code == 200
    assert response.json() == document
    assert json.loads(response.content) == json.loads(json.dumps(document))


def test_bodies_the_fast_parser_refuses_get_the_standard_parse(client: TestClient) -> None:
    # UTF-16 JSON: json.loads accepts it (RFC 8259 detection), pydantic-core does not.
    utf16 = post(client, json.dumps({"a": "b"}).encode("utf-16"))
    assert utf16.status_code == 200 and utf16.json() == {"a": "b"}
    # Truncated JSON: the standard decoder's message, the service's invalid_json answer.
    truncated = post(client, b'{"a": "b",')
    assert truncated.status_code == 400
    assert truncated.json()["code"] == "invalid_json"
    assert "Expecting property name" in truncated.json()["detail"]
    # Trailing data after a valid object is refused, as json.loads refuses it.
    trailing = post(client, b'{"a": 1} {"b": 2}')
    assert trailing.status_code == 400 and "Extra data" in trailing.json()["detail"]


def test_non_finite_numbers_are_written_as_null() -> None:
    body = FastJSONResponse({"nan": math.nan, "inf": math.inf, "ok": 1.25}).body
    assert json.loads(body) == {"nan": None, "inf": None, "ok": 1.25}


def test_responses_write_other_types_as_pydantic_core_does() -> None:
    import datetime
    import decimal
    import uuid

    document = {
        "when": datetime.datetime(2026, 11, 24, 15, 6, 9, tzinfo=datetime.UTC),
        "money": decimal.Decimal("0.15"),
        "id": uuid.UUID(int=7),
        1: "int key",
    }
    expected = {
        "when": "2026-11-24T15:06:09Z",
        "money": "0.15",
        "id": "00000000-0000-0000-0000-000000000007",
        "1": "int key",
    }
    assert json.loads(FastJSONResponse(document).body) == expected
    # An int beyond orjson's 64 bits: the whole document is written by pydantic-core.
    with_big = json.loads(FastJSONResponse({**document, "big": 2**70}).body)
    assert with_big == {**expected, "big": 2**70}

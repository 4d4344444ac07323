"""Billing through the HTTP API: reserve, settle and refund sums; failures and timeouts;
402 before work; idempotent submits (async and sync replays).

Prices are the defaults: $0.12 per output, $0.15 reserved per requested output.
Every movement is read back from ``GET /v1/phota/balance``.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from service_support import (
    JOBS,
    FailingEngine,
    SlowEngine,
)
from service_support import running_service as running

ASYNC_URLS: dict[str, Any] = {"async": True, "response_mode": "urls"}


def movements(account: dict[str, Any], kind: str | None = None) -> list[tuple[str, Decimal]]:
    """(kind, amount) of the ledger rows, oldest first; only ``kind`` rows if given."""
    rows = reversed(account["ledger"])
    return [
        (row["kind"], Decimal(row["amount"])) for row in rows if kind is None or row["kind"] == kind
    ]


def job_movements(account: dict[str, Any], job_id: str) -> list[tuple[str, Decimal]]:
    rows = [row for row in reversed(account["ledger"]) if row["reference"] == f"job:{job_id}"]
    return [(row["kind"], Decimal(row["amount"])) for row in rows]


def only_job_id(account: dict[str, Any]) -> str:
    """The id of the account's only job, from its reservation row."""
    (reference,) = [row["reference"] for row in account["ledger"] if row["kind"] == "reserve"]
    assert reference.startswith("job:")
    return str(reference.removeprefix("job:"))


def assert_ledger_adds_up(account: dict[str, Any]) -> None:
    amounts = [Decimal(row["amount"]) for row in account["ledger"]]
    assert sum(amounts, Decimal(0)) == Decimal(account["balance"])
    for row in account["ledger"]:  # each row's balance_after is the running sum so far
        older = [Decimal(r["amount"]) for r in account["ledger"] if r["id"] <= row["id"]]
        assert sum(older, Decimal(0)) == Decimal(row["balance_after"])


# --- reserve, settle, refund -------------------------------------------------------------


def test_sync_remix_reserves_the_worst_case_and_refunds_the_difference(tmp_path: Path) -> None:
    with running(tmp_path, credit="1.00") as caller:
        response = caller.remix(num_output_images=3)
        assert response.status_code == 200, response.text
        account = caller.account()

    job_id = only_job_id(account)
    assert job_movements(account, job_id) == [
        ("reserve", Decimal("-0.45")),
        ("settle", Decimal("0.00")),
        ("refund", Decimal("0.09")),
    ]
    assert Decimal(account["balance"]) == Decimal("0.64")
    assert movements(account)[0] == ("credit", Decimal("1.00"))
    assert_ledger_adds_up(account)


def test_engine_failure_is_500_refunds_everything_and_fails_the_job(tmp_path: Path) -> None:
    with running(tmp_path, engine=FailingEngine(), credit="1.00") as caller:
        response = caller.remix(num_output_images=2)
        assert response.status_code == 500, response.text
        body = response.json()
        assert body["code"] == "engine_error"
        assert "simulated engine failure" in body["detail"]
        assert body["request_id"] == response.headers["X-Request-Id"]
        account = caller.account()
        job = caller.job(only_job_id(account))

    assert job_movements(account, job["job_id"]) == [
        ("reserve", Decimal("-0.30")),
        ("refund", Decimal("0.30")),
    ]
    assert Decimal(account["balance"]) == Decimal("1.00")
    assert_ledger_adds_up(account)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "engine_error"
    assert job["result"] is None


def test_timeout_is_504_refunded_and_the_late_result_is_not_charged(tmp_path: Path) -> None:
    engine = SlowEngine(seconds=5)
    with running(tmp_path, engine=engine, sync_timeout_s=0.5) as caller:
        started = time.monotonic()
        response = caller.remix()
        waited = time.monotonic() - started
        try:
            assert response.status_code == 504, response.text
            assert response.json()["code"] == "timeout"
            assert "refunded" in response.json()["detail"]
            assert waited < 4  # answered at the limit, not when the engine finished
            after_timeout = caller.account()
            assert Decimal(after_timeout["balance"]) == Decimal("10.00")
        finally:
            engine.release.set()  # the engine finishes now, after its request gave up
        caller.wait_until_idle()
        later = caller.account()
        job = caller.job(only_job_id(later))

    assert later == after_timeout  # the late result moved no money
    assert job_movements(later, job["job_id"]) == [
        ("reserve", Decimal("-0.15")),
        ("refund", Decimal("0.15")),
    ]
    assert (job["status"], job["error"]["code"]) == ("failed", "timeout")
    assert_ledger_adds_up(later)


def test_insufficient_credit_is_402_before_any_work(tmp_path: Path) -> None:
    engine = SlowEngine(seconds=0)
    with running(tmp_path, engine=engine, credit="0.20") as caller:
        before = caller.account()
        response = caller.remix(num_output_images=2)  # reserves 2 x 0.15 = 0.30

        assert response.status_code == 402, response.text
        body = response.json()
        assert body["code"] == "insufficient_credit"
        assert "0.30" in body["detail"] and "0.20" in body["detail"]
        assert body["request_id"] == response.headers["X-Request-Id"]
        assert caller.account() == before
        assert not engine.started.is_set()
        # One output (0.15 reserved) still fits, and is charged 0.12.
        assert caller.remix(num_output_images=1).status_code == 200
        assert caller.balance() == Decimal("0.08")


# --- idempotent submits ------------------------------------------------------------------


def test_repeated_async_submit_returns_the_same_job_and_reserves_once(tmp_path: Path) -> None:
    with running(tmp_path) as caller:
        first = caller.remix(**ASYNC_URLS, client_request_id="order-1")
        second = caller.remix(**ASYNC_URLS, client_request_id="order-1")
        assert (first.status_code, second.status_code) == (202, 202)
        assert first.json() == second.json()
        job_id = first.json()["job_id"]
        caller.wait_for_job(job_id)
        third = caller.remix(**ASYNC_URLS, client_request_id="order-1")  # after it finished
        account = caller.account()

    assert third.status_code == 202 and third.json()["job_id"] == job_id
    assert len(movements(account, "reserve")) == 1
    assert job_movements(account, job_id) == [
        ("reserve", Decimal("-0.15")),
        ("settle", Decimal("0.00")),
        ("refund", Decimal("0.03")),
    ]
    assert Decimal(account["balance"]) == Decimal("9.88")


def test_reused_client_request_id_with_another_body_is_409(tmp_path: Path) -> None:
    with running(tmp_path) as caller:
        first = caller.remix(**ASYNC_URLS, client_request_id="order-2")
        assert first.status_code == 202, first.text
        caller.wait_for_job(first.json()["job_id"])
        before = caller.account()

        response = caller.remix(**ASYNC_URLS, client_request_id="order-2", num_output_images=2)

        assert response.status_code == 409, response.text
        body = response.json()
        assert body["code"] == "idempotency_conflict"
        assert "'order-2'" in body["detail"] and "new id" in body["detail"]
        assert body["request_id"] == response.headers["X-Request-Id"]
        assert caller.account() == before


def test_concurrent_duplicate_submits_make_one_job(tmp_path: Path) -> None:
    threads_count = 4
    with running(tmp_path) as caller:
        barrier = threading.Barrier(threads_count)
        answers: list[httpx.Response] = []

        def submit() -> None:
            barrier.wait(5)
            answers.append(caller.remix(**ASYNC_URLS, client_request_id="order-3"))

        threads = [threading.Thread(target=submit) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)

        assert [a.status_code for a in answers] == [202] * threads_count, [a.text for a in answers]
        job_ids = {a.json()["job_id"] for a in answers}
        assert len(job_ids) == 1
        caller.wait_for_job(job_ids.pop())
        account = caller.account()

    assert len(movements(account, "reserve")) == 1
    assert Decimal(account["balance"]) == Decimal("9.88")
    assert_ledger_adds_up(account)


def test_async_job_succeeds_and_its_download_urls_download(tmp_path: Path) -> None:
    with running(tmp_path) as caller:
        accepted = caller.remix(**ASYNC_URLS, num_output_images=2, output_format="png")
        assert accepted.status_code == 202, accepted.text
        handle = accepted.json()
        assert urlsplit(handle["poll_url"]).path == f"{JOBS}/{handle['job_id']}"

        document = caller.wait_for_job(handle["job_id"])
        assert document["status"] == "succeeded", document
        polled = caller.client.get(handle["poll_url"], headers=caller.headers).json()
        downloads = [caller.client.get(url) for url in document["result"]["download_urls"]]
        account = caller.account()

    assert polled["status"] == "succeeded"
    result = document["result"]
    assert result["images"] == []
    assert result["known_subjects"] == {"counts": {}}
    assert len(result["reports"]) == 2
    assert [d.status_code for d in downloads] == [200, 200]
    assert all(d.content.startswith(b"\x89PNG\r\n\x1a\n") for d in downloads)
    assert document["error"] is None
    assert Decimal(account["balance"]) == Decimal("9.76")


def test_sync_replay_in_urls_mode_returns_the_first_result_without_charging(
    tmp_path: Path,
) -> None:
    with running(tmp_path) as caller:
        first = caller.remix(response_mode="urls", client_request_id="sync-1")
        assert first.status_code == 200, first.text
        charged_once = caller.account()
        replay = caller.remix(response_mode="urls", client_request_id="sync-1")
        assert replay.status_code == 200, replay.text
        first_files = [caller.client.get(url).content for url in first.json()["download_urls"]]
        replay_files = [caller.client.get(url).content for url in replay.json()["download_urls"]]

        assert caller.account() == charged_once
    assert len(movements(charged_once, "reserve")) == 1
    assert replay.json()["images"] == []
    assert replay.json()["known_subjects"] == first.json()["known_subjects"]
    assert replay.json()["reports"] == first.json()["reports"]

    def paths(response: httpx.Response) -> list[str]:
        # Re-signed on every read, so only the paths must match.
        return [urlsplit(url).path for url in response.json()["download_urls"]]

    assert paths(replay) == paths(first)
    assert replay_files == first_files and len(first_files) == 1


@pytest.mark.parametrize("fields", [{}, {"response_mode": "bytes"}], ids=["default", "bytes"])
def test_sync_replay_in_bytes_mode_is_409_without_charging(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    # Inline images are not kept, so there is nothing to replay: say so rather than
    # silently running (and charging) the remix a second time.
    with running(tmp_path) as caller:
        assert caller.remix(client_request_id="sync-2", **fields).status_code == 200
        charged_once = caller.account()
        replay = caller.remix(client_request_id="sync-2", **fields)

        assert replay.status_code == 409, replay.text
        assert replay.json()["code"] == "idempotency_conflict"
        assert "inline" in replay.json()["detail"]
        assert caller.account() == charged_once

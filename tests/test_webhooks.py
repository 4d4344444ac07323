"""photoremix.services.webhooks: signatures, callback URL checks, and delivery with retries
against a real HTTP receiver on 127.0.0.1.

The autouse fixture records every socket the code under test opens and fails the test on
any address that is not loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from photoremix.net.fetch import FetchError, FetchPolicy, post_bytes
from photoremix.services.webhooks import (
    EVENT_HEADER,
    MAX_CALLBACK_URL_CHARS,
    SIGNATURE_HEADER,
    CallbackUrlError,
    DeliveryResult,
    WebhookSignatureError,
    check_callback_url,
    deliver,
    sign_payload,
    verify_signature,
)

SECRET = secrets.token_hex(32)  # the shape of Account.webhook_secret
BODY = json.dumps({"id": "job_123", "status": "SUCCEEDED", "outputs": ["a.png"]}).encode()
T0 = 1_767_225_600
LOOPBACK_ONLY = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}))


# --- signatures -----------------------------------------------------------------------------


def test_signature_is_the_documented_hmac_and_verifies() -> None:
    header = sign_payload(SECRET, BODY, T0)
    expected = hmac.new(SECRET.encode(), f"{T0}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T0},v1={expected}"
    verify_signature(SECRET, BODY, header, now=T0)


def test_signature_depends_on_the_timestamp() -> None:
    assert sign_payload(SECRET, BODY, T0) != sign_payload(SECRET, BODY, T0 + 1)


@pytest.mark.parametrize(
    ("secret", "body"),
    [
        (SECRET, BODY + b" "),  # tampered body
        (SECRET, BODY.replace(b"SUCCEEDED", b"FAILED")),
        (secrets.token_hex(32), BODY),  # another account's secret
    ],
)
def test_mismatch_is_refused(secret: str, body: bytes) -> None:
    header = sign_payload(SECRET, BODY, T0)
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(secret, body, header, now=T0)
    assert caught.value.reason == "mismatch"
    assert "does not match" in str(caught.value)


def test_timestamp_swapped_into_a_genuine_header_is_refused() -> None:
    signature = sign_payload(SECRET, BODY, T0).partition(",")[2]
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(SECRET, BODY, f"t={T0 + 600},{signature}", now=T0 + 600)
    assert caught.value.reason == "mismatch"


@pytest.mark.parametrize(
    ("offset_s", "words"), [(301, "301 s old"), (-301, "301 s in the future"), (10**6, "old")]
)
def test_timestamp_outside_the_tolerance_is_stale(offset_s: int, words: str) -> None:
    header = sign_payload(SECRET, BODY, T0)
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(SECRET, BODY, header, now=T0 + offset_s)
    assert caught.value.reason == "stale"
    assert words in str(caught.value)


@pytest.mark.parametrize("offset_s", [-300, -1, 0, 1, 299.9, 300])
def test_timestamp_within_the_tolerance_verifies(offset_s: float) -> None:
    verify_signature(SECRET, BODY, sign_payload(SECRET, BODY, T0), now=T0 + offset_s)


def test_tolerance_is_configurable() -> None:
    header = sign_payload(SECRET, BODY, T0)
    verify_signature(SECRET, BODY, header, tolerance_s=1000, now=T0 + 900)
    with pytest.raises(WebhookSignatureError, match="limit 10 s"):
        verify_signature(SECRET, BODY, header, tolerance_s=10, now=T0 + 11)


def test_default_now_is_the_current_time() -> None:
    verify_signature(SECRET, BODY, sign_payload(SECRET, BODY, int(time.time())))
    with pytest.raises(WebhookSignatureError, match="old"):
        verify_signature(SECRET, BODY, sign_payload(SECRET, BODY, int(time.time()) - 3600))


def test_any_of_several_v1_values_may_match() -> None:
    genuine = sign_payload(SECRET, BODY, T0)
    rotated_out = sign_payload(secrets.token_hex(32), BODY, T0).partition(",")[2]
    verify_signature(SECRET, BODY, f"{genuine},{rotated_out}", now=T0)
    verify_signature(SECRET, BODY, f"t={T0}, {rotated_out}, {genuine.partition(',')[2]}", now=T0)


def test_unknown_keys_are_ignored() -> None:
    verify_signature(SECRET, BODY, sign_payload(SECRET, BODY, T0) + ",v2=future", now=T0)


_GOOD_HEX = "ab" * 32


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={_GOOD_HEX}",  # no timestamp
        f"t={T0}",  # no signature
        f"t={T0},v1=",
        f"t=abc,v1={_GOOD_HEX}",
        f"t=-5,v1={_GOOD_HEX}",
        f"t=\u00b2,v1={_GOOD_HEX}",  # a Unicode digit that int() refuses
        f"t={T0},t={T0},v1={_GOOD_HEX}",
        f"t={T0},v1={_GOOD_HEX[:-1]}",  # 63 digits
        f"t={T0},v1={_GOOD_HEX}00",
        f"t={T0},v1={'zz' * 32}",
        f"t={T0},v1={'é' * 64}",  # non-ASCII must not reach compare_digest
        f"t={T0};v1={_GOOD_HEX}",
    ],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(SECRET, BODY, header, now=T0)
    assert caught.value.reason == "malformed"
    assert SIGNATURE_HEADER in str(caught.value)


def test_signature_errors_are_value_errors() -> None:
    assert issubclass(WebhookSignatureError, ValueError)


def test_empty_secret_is_refused_for_signing() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign_payload("", BODY, T0)


# --- callback URL checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("https://example.com/hook", set()),
        ("https://example.com:8443/hooks/photoremix?token=abc", set()),
        ("https://93.184.215.14/hook", set()),  # a public IP literal
        ("http://localhost:8000/cb", {"localhost"}),
        ("http://LOCALHOST./cb", {"localhost"}),
        ("http://127.0.0.1:9000/cb", {"127.0.0.0/8"}),
        ("http://[::1]:9000/cb", {"::1"}),
        ("https://10.1.2.3/cb", {"10.0.0.0/8"}),
        ("https://" + "a" * (MAX_CALLBACK_URL_CHARS - len("https://.com")) + ".com", set()),
    ],
)
def test_acceptable_callback_urls_pass(url: str, allow: set[str]) -> None:
    check_callback_url(url, frozenset(allow))


@pytest.mark.parametrize(
    ("url", "allow", "reason", "words"),
    [
        ("http://example.com/hook", set(), "scheme", "use https"),
        ("http://127.0.0.1/hook", {"localhost"}, "scheme", "use https"),  # a name is not an IP
        ("http://example.com/hook", {"10.0.0.0/8"}, "scheme", "use https"),
        ("ftp://example.com/hook", set(), "scheme", "only https"),
        ("javascript:alert(1)", set(), "scheme", "only https"),
        ("not a url", set(), "scheme", "only https"),
        ("", set(), "scheme", "only https"),
        ("https:///hook", set(), "invalid_url", "no host"),
        ("https://[::1/hook", set(), "invalid_url", "not a valid URL"),
        ("https://user:pw@example.com/hook", set(), "credentials", "password"),
        ("https://token@example.com/hook", set(), "credentials", "user name"),
        ("https://127.0.0.1/hook", set(), "private_address", "a loopback address"),
        ("https://[::1]/hook", set(), "private_address", "a loopback address"),
        ("https://169.254.169.254/latest", set(), "private_address", "a link-local address"),
        ("https://192.168.0.10/hook", {"10.0.0.0/8"}, "private_address", "a private address"),
        ("https://" + "a" * MAX_CALLBACK_URL_CHARS + ".com", set(), "too_long", "limit is 2048"),
    ],
)
def test_unacceptable_callback_urls_are_refused(
    url: str, allow: set[str], reason: str, words: str
) -> None:
    with pytest.raises(CallbackUrlError) as caught:
        check_callback_url(url, frozenset(allow))
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.reason == reason and error.url == url
    assert words in str(error)
    assert str(error).startswith(f"Refused callback URL {url[:200]}")


# --- delivery against a loopback receiver -------------------------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    signature_problem: str | None  # WebhookSignatureError.reason, None when it verified


class _Receiver(ThreadingHTTPServer):
    """A client's webhook endpoint: verifies each POST, answers scripted statuses."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.statuses: list[int] = []  # answers to give in order; 200 once used up
        self.delay_s = 0.0  # pause before answering
        self.received: list[Received] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender that timed out and hung up is what some tests want


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            verify_signature(SECRET, body, self.headers.get(SIGNATURE_HEADER, ""))
            problem = None
        except WebhookSignatureError as error:
            problem = error.reason
        self.server.received.append(Received(dict(self.headers.items()), body, problem))
        time.sleep(self.server.delay_s)
        scripted = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(401 if problem else scripted)
        if 300 <= scripted < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    httpd = _Receiver()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address the code under test connects to; non-loopback ones fail the test."""
    real_create_connection = socket.create_connection
    opened: list[tuple[str, int]] = []

    def recording(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
            pytest.fail(f"test tried to connect to {address}")
        opened.append(address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    return opened


class FakeTime:
    """``sleep`` records the delays asked for and advances ``clock`` instead of waiting.

    Starts at the real time so that the receiver's ``verify_signature`` (real clock) accepts
    the signatures; the fake waits in these tests add only a few seconds.
    """

    def __init__(self) -> None:
        self.now = time.time()
        self.delays: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _deliver(
    url: str, fake: FakeTime, policy: FetchPolicy = LOOPBACK_ONLY, **kwargs: Any
) -> DeliveryResult:
    return deliver(url, BODY, SECRET, policy, sleep=fake.sleep, clock=fake.clock, **kwargs)


def _timestamp(received: Received) -> int:
    match = re.fullmatch(r"t=(\d+),v1=[0-9a-f]{64}", received.headers[SIGNATURE_HEADER])
    assert match is not None
    return int(match.group(1))


def test_delivery_is_signed_and_verified_by_the_receiver(receiver: _Receiver) -> None:
    fake = FakeTime()
    result = _deliver(receiver.url, fake)
    assert result == DeliveryResult(delivered=True, attempts=1, last_status=200, last_error=None)
    [request] = receiver.received
    assert request.signature_problem is None
    assert request.body == BODY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[EVENT_HEADER] == "job.completed"
    assert _timestamp(request) == int(fake.now)
    assert fake.delays == []


def test_event_header_is_configurable(receiver: _Receiver) -> None:
    assert _deliver(receiver.url, FakeTime(), event="job.failed").delivered
    assert receiver.received[0].headers[EVENT_HEADER] == "job.failed"


def test_wrong_secret_is_caught_by_the_receiver(receiver: _Receiver) -> None:
    result = deliver(
        receiver.url, BODY, secrets.token_hex(32), LOOPBACK_ONLY, sleep=FakeTime().sleep
    )
    assert not result.delivered
    assert result.last_status == 401 and result.attempts == 1  # a 4xx is not retried
    assert receiver.received[0].signature_problem == "mismatch"


def test_server_errors_are_retried_with_growing_backoff_and_fresh_signatures(
    receiver: _Receiver,
) -> None:
    receiver.statuses = [500, 503]
    fake = FakeTime()
    result = _deliver(receiver.url, fake, first_backoff_s=1.0)
    assert result == DeliveryResult(delivered=True, attempts=3, last_status=200, last_error=None)
    assert len(receiver.received) == 3
    assert all(request.signature_problem is None for request in receiver.received)
    assert all(request.body == BODY for request in receiver.received)
    assert len(fake.delays) == 2 and 0 < fake.delays[0] < fake.delays[1]
    stamps = [_timestamp(request) for request in receiver.received]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # re-signed on every attempt


def test_too_many_requests_is_retried(receiver: _Receiver) -> None:
    receiver.statuses = [429]
    result = _deliver(receiver.url, FakeTime())
    assert result.delivered and result.attempts == 2


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_client_errors_are_not_retried(receiver: _Receiver, status: int) -> None:
    receiver.statuses = [status]
    fake = FakeTime()
    result = _deliver(receiver.url, fake)
    assert result == DeliveryResult(
        delivered=False,
        attempts=1,
        last_status=status,
        last_error=f"the receiver answered HTTP {status}.",
    )
    assert len(receiver.received) == 1 and fake.delays == []


def test_redirect_is_a_failed_delivery_and_not_followed(receiver: _Receiver) -> None:
    receiver.statuses = [302]
    result = _deliver(receiver.url, FakeTime())
    assert not result.delivered and result.last_status == 302 and result.attempts == 1
    assert len(receiver.received) == 1


def test_persistent_server_errors_give_up_after_the_attempts(receiver: _Receiver) -> None:
    receiver.statuses = [500] * 10
    fake = FakeTime()
    result = _deliver(receiver.url, fake, attempts=4)
    assert result == DeliveryResult(
        delivered=False, attempts=4, last_status=500, last_error="the receiver answered HTTP 500."
    )
    assert len(receiver.received) == 4 and len(fake.delays) == 3


def _closed_port_url() -> str:
    with socket.socket() as probe:  # bind then close: a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/hook"


def test_unreachable_receiver_fails_after_all_attempts(connections: list[Any]) -> None:
    fake = FakeTime()
    result = _deliver(_closed_port_url(), fake, attempts=3)
    assert not result.delivered and result.attempts == 3
    assert result.last_status is None
    assert result.last_error is not None and "connection failed" in result.last_error
    assert len(connections) == 3 and len(fake.delays) == 2


def test_backoff_follows_the_documented_bounds() -> None:
    fake = FakeTime()
    first, cap = 0.5, 3.0
    result = _deliver(
        _closed_port_url(), fake, attempts=7, first_backoff_s=first, max_backoff_s=cap
    )
    assert result.attempts == 7 and len(fake.delays) == 6
    for retry, delay in enumerate(fake.delays, start=1):
        base = first * 2 ** (retry - 1)
        assert min(base, cap) <= delay <= min(base + first / 2, cap)
    assert fake.delays[-1] == cap


def test_backoff_is_jittered() -> None:
    first_delays = []
    for _ in range(4):
        fake = FakeTime()
        _deliver(_closed_port_url(), fake, attempts=2)
        first_delays.append(fake.delays[0])
    assert len(set(first_delays)) > 1


def test_timeouts_are_retried(receiver: _Receiver) -> None:
    receiver.delay_s = 1.0
    started = time.monotonic()
    result = _deliver(receiver.url, FakeTime(), attempts=2, timeout_s=0.2)
    assert not result.delivered and result.attempts == 2 and result.last_status is None
    assert result.last_error is not None and "time limit" in result.last_error
    assert time.monotonic() - started < 1.5  # gave up on each attempt, did not wait it out


def test_loopback_name_not_allowlisted_is_refused_at_connect_time(
    receiver: _Receiver, connections: list[Any]
) -> None:
    # https and a host name pass check_callback_url; the transport resolves "localhost"
    # and refuses the loopback answer before opening a socket.
    url = f"https://localhost:{receiver.server_address[1]}/hook"
    result = _deliver(url, FakeTime(), policy=FetchPolicy())
    assert not result.delivered and result.attempts == 1 and result.last_status is None
    assert result.last_error is not None and "a loopback address" in result.last_error
    assert receiver.received == [] and connections == []


@pytest.mark.parametrize(
    "url_template",
    ["http://127.0.0.1:{port}/hook", "https://127.0.0.1:{port}/hook", "https://u:p@x.org/h"],
)
def test_refused_callback_url_is_never_contacted(
    receiver: _Receiver, connections: list[Any], url_template: str
) -> None:
    url = url_template.format(port=receiver.server_address[1])
    result = _deliver(url, FakeTime(), policy=FetchPolicy())
    assert not result.delivered and result.attempts == 0 and result.last_status is None
    assert result.last_error is not None and result.last_error.startswith("Refused callback URL")
    assert receiver.received == [] and connections == []


def test_bad_retry_settings_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="attempts"):
        deliver("https://example.com/", BODY, SECRET, FetchPolicy(), attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        deliver(
            "https://example.com/", BODY, SECRET, FetchPolicy(), first_backoff_s=5, max_backoff_s=1
        )


# --- post_bytes (net.fetch) -------------------------------------------------------------------


def test_post_bytes_returns_the_status_and_sends_the_body(receiver: _Receiver) -> None:
    receiver.statuses = [202]
    headers = {SIGNATURE_HEADER: sign_payload(SECRET, BODY, int(time.time()))}
    assert post_bytes(receiver.url, BODY, headers, LOOPBACK_ONLY, timeout_s=5) == 202
    assert receiver.received[0].body == BODY and receiver.received[0].signature_problem is None


def test_post_bytes_refuses_a_non_public_address(
    receiver: _Receiver, connections: list[Any]
) -> None:
    with pytest.raises(FetchError) as caught:
        post_bytes(receiver.url, BODY, {}, FetchPolicy(), timeout_s=5)
    assert caught.value.reason == "private_address"
    assert receiver.received == [] and connections == []

"""Signed webhook callbacks: tell a client's server that its job has finished.

When an async job finishes, the service POSTs the job document (JSON) to the job's
``callback_url``. So that the receiver can tell the request came from us and is not a replay,
every request carries these headers (the scheme is Stripe's)::

    Content-Type: application/json
    X-Phota-Event: job.completed
    X-Phota-Signature: t=1767225600,v1=<64 lowercase hex digits>

``t`` is the Unix time in seconds when the request was signed, and::

    v1 = hex(HMAC-SHA256(key=webhook_secret.encode("utf-8"), msg=f"{t}.".encode() + raw_body))

``webhook_secret`` is the account's secret (``GET /v1/phota/webhook-secret``), a 64-character
hex string used as UTF-8 text, not hex-decoded. To verify a request, a receiver:

1. takes the raw body bytes, before any JSON parsing (re-serialised JSON differs);
2. splits the header on "," into ``key=value`` pairs and takes ``t`` and every ``v1``
   (other keys are ignored, which leaves room for a future scheme);
3. computes ``v1`` as above and compares it in constant time (``hmac.compare_digest``);
4. refuses a ``t`` more than 5 minutes from its own clock, so that a captured request
   cannot be replayed later.

``verify_signature`` (with ``sign_payload`` and the two patterns it uses) does exactly this
with the standard library only; clients may copy them.

Delivery (``deliver``) re-signs every attempt with a fresh ``t``. A failure that may pass
later (connection error, timeout, DNS failure, HTTP 5xx or 429) is retried with exponential
backoff and jitter; any other answer is final: 2xx is success, a 3xx (redirects are not
followed) or another 4xx is a failure. Receivers should answer 2xx quickly and expect a
delivery more than once (the job id in the body identifies repeats).

A callback URL is user input, so it is checked twice: by ``check_callback_url`` when the job
is submitted, and by the SSRF-safe transport of ``photoremix.net.fetch`` when the socket
opens, on the address actually connected to.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import tenacity

from photoremix import __version__
from photoremix.net.fetch import FetchError, FetchPolicy, non_public_kind, post_bytes

SIGNATURE_HEADER = "X-Phota-Signature"
EVENT_HEADER = "X-Phota-Event"
MAX_CALLBACK_URL_CHARS = 2048

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE_HEX = re.compile(r"[0-9a-f]{64}")
# FetchError reasons worth another attempt; the others are refusals that would only repeat.
_TRANSIENT_FETCH_REASONS = frozenset({"dns", "timeout", "connection"})
_MESSAGE_URL_CHARS = 200


class WebhookSignatureError(ValueError):
    """An ``X-Phota-Signature`` header did not verify.

    reason: "malformed" (not ``t=<digits>,v1=<64 hex digits>``), "stale" (timestamp outside
        the tolerance, in the past or the future) or "mismatch" (wrong secret or altered body).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CallbackUrlError(ValueError):
    """A callback URL was refused; the message names the URL and the reason.

    reason: "too_long", "invalid_url", "scheme", "credentials" or "private_address".
    """

    def __init__(self, url: str, reason: str, detail: str) -> None:
        shown = url if len(url) <= _MESSAGE_URL_CHARS else url[:_MESSAGE_URL_CHARS] + "..."
        super().__init__(f"Refused callback URL {shown}: {detail}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class DeliveryResult:
    """What ``deliver`` achieved.

    delivered: the receiver answered 2xx.
    attempts: POSTs tried; 0 when the URL was refused before any.
    last_status: HTTP status of the last attempt; None when it got no answer.
    last_error: why the last attempt failed, as a sentence; None when delivered.
    """

    delivered: bool
    attempts: int
    last_status: int | None
    last_error: str | None


def sign_payload(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Phota-Signature`` header value for ``body`` signed at ``timestamp`` (Unix s)."""
    if not secret:
        raise ValueError("The webhook secret is empty; refusing to sign with an empty key.")
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> None:
    """Check an ``X-Phota-Signature`` header against the raw request body.

    Returns when ``body`` was signed with ``secret`` within ``tolerance_s`` seconds of
    ``now`` (default: the current Unix time); raises WebhookSignatureError otherwise.
    """
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value.lower())
    well_formed = (
        len(timestamps) == 1
        and _TIMESTAMP.fullmatch(timestamps[0]) is not None
        and len(signatures) > 0
        and all(_SIGNATURE_HEX.fullmatch(signature) for signature in signatures)
    )
    if not well_formed:
        raise WebhookSignatureError(
            "malformed",
            f"The {SIGNATURE_HEADER} header is malformed: expected "
            f"'t=<unix seconds>,v1=<64 hex digits>', got {header[:200]!r}.",
        )
    timestamp = int(timestamps[0])
    expected = sign_payload(secret, body, timestamp).rpartition("v1=")[2]
    # Several v1 values may be sent while a secret is being rotated: any match will do.
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise WebhookSignatureError(
            "mismatch",
            f"The {SIGNATURE_HEADER} signature does not match the body: check that the "
            "secret is this account's webhook secret and that the raw body bytes are "
            "verified, not re-serialised JSON.",
        )
    age_s = (time.time() if now is None else now) - timestamp
    if abs(age_s) > tolerance_s:
        when = f"{age_s:.0f} s old" if age_s > 0 else f"{-age_s:.0f} s in the future"
        raise WebhookSignatureError(
            "stale",
            f"The {SIGNATURE_HEADER} timestamp is {when} (limit {tolerance_s} s): either the "
            "request is a replay or a clock is wrong.",
        )


def check_callback_url(url: str, allow_hosts: frozenset[str]) -> None:
    """Raise CallbackUrlError unless ``url`` is acceptable as a job's ``callback_url``.

    Accepted: an https URL with a host and no user name or password, at most
    ``MAX_CALLBACK_URL_CHARS`` long; plain http only when the host is in ``allow_hosts``
    (hostnames, IPs or CIDR networks, as ``FetchPolicy.allow_hosts``). A host written as a
    non-public IP (``https://10.0.0.5/``) is refused here unless allowed, since delivery
    would refuse it anyway; host names are resolved and checked at delivery.
    """
    if len(url) > MAX_CALLBACK_URL_CHARS:
        detail = f"it is {len(url)} characters long; the limit is {MAX_CALLBACK_URL_CHARS}."
        raise CallbackUrlError(url, "too_long", detail)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise CallbackUrlError(url, "invalid_url", f"it is not a valid URL ({exc}).") from None
    if parsed.scheme not in ("http", "https"):
        raise CallbackUrlError(url, "scheme", "only https URLs are accepted.")
    if not parsed.host:
        raise CallbackUrlError(url, "invalid_url", "the URL has no host name.")
    if parsed.userinfo:
        raise CallbackUrlError(
            url, "credentials", "URLs with a user name or password are not allowed."
        )
    policy = FetchPolicy(allow_hosts=allow_hosts)
    try:
        address = ipaddress.ip_address(parsed.host)
    except ValueError:
        address = None
    allowed = policy.allows_host(parsed.host) or (
        address is not None and policy.allows_address(address)
    )
    if parsed.scheme == "http" and not allowed:
        raise CallbackUrlError(url, "scheme", "plain http is not accepted; use https.")
    kind = None if address is None or allowed else non_public_kind(address)
    if kind is not None:
        raise CallbackUrlError(url, "private_address", f"{parsed.host} is {kind}.")


@dataclass(frozen=True)
class _Attempt:
    """One POST: its status (None if no answer), the failure sentence, and whether to retry."""

    status: int | None
    error: str | None
    retry: bool


def deliver(
    url: str,
    body: bytes,
    secret: str,
    policy: FetchPolicy,
    *,
    attempts: int = 5,
    first_backoff_s: float = 1.0,
    max_backoff_s: float = 60.0,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    event: str = "job.completed",
) -> DeliveryResult:
    """POST the JSON ``body`` to ``url``, signed with ``secret``, retrying transient failures.

    The wait before retry ``n`` (n = 1, 2, ...) is ``first_backoff_s * 2**(n - 1)`` plus a
    random jitter of up to ``first_backoff_s / 2``, capped at ``max_backoff_s``; ``sleep``
    does the waiting and ``clock`` (Unix seconds) dates the signatures, both injectable for
    tests. ``timeout_s`` bounds each network step of one attempt. The URL is re-checked with
    ``check_callback_url(url, policy.allow_hosts)`` first; a refused URL is never contacted.

    Never raises for a refused URL or a network failure: the result says what happened.
    Blocking (up to about ``attempts * timeout_s`` plus the waits); run it in a worker thread.
    """
    if attempts < 1:
        raise ValueError(f"deliver attempts must be at least 1, got {attempts}")
    if not 0 <= first_backoff_s <= max_backoff_s:
        raise ValueError("deliver needs 0 <= first_backoff_s <= max_backoff_s")
    try:
        check_callback_url(url, policy.allow_hosts)
    except CallbackUrlError as refused:
        return DeliveryResult(
            delivered=False, attempts=0, last_status=None, last_error=str(refused)
        )

    def post_once() -> _Attempt:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"photoremix/{__version__} (webhooks)",
            EVENT_HEADER: event,
            SIGNATURE_HEADER: sign_payload(secret, body, int(clock())),
        }
        try:
            status = post_bytes(url, body, headers, policy, timeout_s)
        except FetchError as failure:
            return _Attempt(None, failure.detail, failure.reason in _TRANSIENT_FETCH_REASONS)
        if 200 <= status < 300:
            return _Attempt(status, None, retry=False)
        transient = status >= 500 or status == 429
        return _Attempt(status, f"the receiver answered HTTP {status}.", transient)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(
            initial=first_backoff_s, max=max_backoff_s, jitter=first_backoff_s / 2
        ),
        retry=tenacity.retry_if_result(lambda attempt: attempt.retry),
        sleep=sleep,
        retry_error_callback=_last_attempt,  # out of attempts: return it, don't raise
    )
    last: _Attempt = retrying(post_once)
    return DeliveryResult(
        delivered=last.error is None,
        attempts=retrying.statistics["attempt_number"],
        last_status=last.status,
        last_error=last.error,
    )


def _last_attempt(state: tenacity.RetryCallState) -> _Attempt:
    assert state.outcome is not None  # tenacity calls this only after an attempt
    return state.outcome.result()

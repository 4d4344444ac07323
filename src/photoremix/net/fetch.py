"""Fetch an image URL supplied by a user without letting that user reach our own network.

A URL from a request body is an SSRF vector: ``http://169.254.169.254/`` (cloud metadata),
``http://localhost:6379/``, or a public name whose DNS answer is ``10.0.0.5``. The rules:

- only ``http``/``https``, no ``user:pass@``, a non-empty host;
- every address a host resolves to must be public (not private, loopback, link-local,
  multicast, reserved or unspecified, IPv4 addresses embedded in IPv6 included), unless the
  host or address is in ``FetchPolicy.allow_hosts`` (local development and tests);
- the address is checked when the socket is opened, on the address actually connected to:
  the host is resolved once, inside the connection, and the socket connects to that literal
  IP, so a DNS answer that changes between "check" and "connect" (DNS rebinding) cannot
  slip through. TLS still verifies the certificate and sends SNI for the URL's hostname;
- redirects are followed by hand, and every hop passes the same checks;
- the body is streamed and abandoned as soon as it exceeds ``max_bytes``; one wall-clock
  budget covers all hops and the body.

Every refusal or failure is a ``FetchError`` (a ``ValueError``) naming the URL and the reason;
the HTTP service maps it to a 400.

``post_bytes`` sends a POST (webhook callbacks) through the same checked connection; it
follows no redirects.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from photoremix import __version__

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 (RFC 6052) maps an IPv4 address into this prefix; on a NAT64 network it reaches that
# IPv4 address, so the IPv4 address is what must be public.
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")

# Reasons that mean "we would not try", as opposed to "we tried and it failed".
_REFUSAL_REASONS = frozenset(
    {"scheme", "credentials", "invalid_url", "private_address", "too_many_redirects", "too_large"}
)
# Long URLs (a pasted data: URI can be megabytes) are shortened in messages, not in ``url``.
_MESSAGE_URL_CHARS = 200


class FetchError(ValueError):
    """A URL was refused or could not be fetched.

    url: the URL being fetched when it failed (after redirects, the hop that failed).
    reason: a short machine code: "scheme", "credentials", "invalid_url", "private_address",
        "dns", "too_many_redirects", "too_large", "timeout", "http_status", "connection".
    detail: the message after "<URL>: ", a sentence ending with a full stop.
    """

    def __init__(self, url: str, reason: str, detail: str) -> None:
        verb = "Refused to fetch" if reason in _REFUSAL_REASONS else "Could not fetch"
        super().__init__(f"{verb} {_shorten(url)}: {detail}")
        self.url = url
        self.reason = reason
        self.detail = detail


def _shorten(url: str) -> str:
    return url if len(url) <= _MESSAGE_URL_CHARS else url[:_MESSAGE_URL_CHARS] + "..."


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for ``fetch_url``.

    max_bytes: largest body accepted (after any Content-Encoding is undone).
    max_redirects: redirects followed before giving up (0 = none).
    timeout_s: wall-clock budget for the whole fetch: every hop and the body.
    connect_timeout_s: budget for opening one TCP/TLS connection (within ``timeout_s``).
    allow_hosts: hostnames ("localhost"), IPs ("127.0.0.1", "::1") or CIDR networks
        ("10.0.0.0/8") exempt from the public-address check. Empty in production.
    user_agent: sent as the User-Agent header.
    """

    max_bytes: int = 30 * 1024 * 1024
    max_redirects: int = 5
    timeout_s: float = 20.0
    connect_timeout_s: float = 5.0
    allow_hosts: frozenset[str] = frozenset()
    user_agent: str = f"photoremix/{__version__} (image fetcher)"
    _allowed_names: frozenset[str] = field(init=False, repr=False, compare=False)
    _allowed_networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"FetchPolicy.max_bytes must be positive, got {self.max_bytes}")
        if self.max_redirects < 0:
            raise ValueError(f"FetchPolicy.max_redirects must be >= 0, got {self.max_redirects}")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("FetchPolicy.timeout_s and connect_timeout_s must be positive")
        # A bare string would silently become a set of single characters.
        if isinstance(self.allow_hosts, str):
            raise TypeError("FetchPolicy.allow_hosts must be a set of strings, not one string")
        names, networks = _parse_allow_hosts(self.allow_hosts)
        object.__setattr__(self, "allow_hosts", frozenset(self.allow_hosts))
        object.__setattr__(self, "_allowed_names", names)
        object.__setattr__(self, "_allowed_networks", networks)

    def allows_host(self, host: str) -> bool:
        """True when ``host`` (as written in the URL) is exempt from the address check."""
        return host.lower().rstrip(".") in self._allowed_names

    def allows_address(self, address: IPAddress) -> bool:
        """True when ``address`` lies in one of the allowed IPs or networks."""
        return any(address in network for network in self._allowed_networks)


def _parse_allow_hosts(entries: Iterable[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip().strip("[]")
        if not text:
            raise ValueError("FetchPolicy.allow_hosts contains an empty entry")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text.lower().rstrip("."))
    return frozenset(names), tuple(networks)


def non_public_kind(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from ("a private address", ...), or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 reaches that IPv4 host: judge the IPv4 address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return non_public_kind(embedded)
    # Order matters: 127.0.0.1 is also "private" to ipaddress; name the most specific kind.
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    # Checked explicitly: ipaddress calls IPv4 multicast (224.0.0.0/4) "global".
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:  # e.g. 100.64.0.0/10, carrier-grade NAT
        return "a non-public address"
    return None


class _HostRejectedError(Exception):
    """Raised inside the connection; ``fetch_url`` turns it into a FetchError with the URL."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _PublicOnlyBackend(httpcore.SyncBackend):
    """httpcore network backend that resolves the host itself, checks every address, and
    connects to the checked IP literal, so the address checked is the address used."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise _HostRejectedError(
                "dns", f"the host name {host!r} did not resolve ({exc})."
            ) from None
        # Keep the scope id of IPv6 link-local results ("fe80::1%eth0"): needed to connect.
        candidates = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not candidates:
            raise _HostRejectedError("dns", f"the host name {host!r} has no addresses.")
        if not self._policy.allows_host(host):
            # Refuse if any answer is non-public: a mixed answer is a rebinding trick.
            for candidate in candidates:
                address = ipaddress.ip_address(candidate)
                kind = non_public_kind(address)
                if kind is not None and not self._policy.allows_address(address):
                    shown = candidate.split("%")[0]
                    raise _HostRejectedError("private_address", f"it resolves to {shown}, {kind}.")
        last_error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for candidate in candidates:
            try:
                # An IP literal: the parent's socket.create_connection does no DNS lookup.
                return super().connect_tcp(candidate, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # candidates is non-empty
        raise last_error


class _PublicOnlyTransport(httpx.HTTPTransport):
    """httpx's standard transport with its connection pool built on ``_PublicOnlyBackend``.

    httpx 0.28 creates its ``httpcore.ConnectionPool`` in ``HTTPTransport.__init__`` and has
    no parameter for the network backend (encode/httpx PR #3749 proposes one), while
    httpcore documents ``ConnectionPool(network_backend=...)`` as public API. So the pool is
    replaced right after construction; ``handle_request``/``close`` and the exception mapping
    stay httpx's own. No proxy: the connection must go to the checked address.
    """

    def __init__(self, policy: FetchPolicy) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=4,  # one fetch uses one connection at a time; redirects may add one
            network_backend=_PublicOnlyBackend(policy),
        )


def _checked_url(url: str) -> httpx.URL:
    """Parse ``url`` and refuse anything but a plain http(s) URL with a host."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(url, "invalid_url", f"it is not a valid URL ({exc}).") from None
    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme or "none"
        raise FetchError(url, "scheme", f"only http and https URLs are allowed (scheme: {scheme}).")
    if parsed.userinfo:
        raise FetchError(url, "credentials", "URLs with a user name or password are not allowed.")
    if not parsed.host:
        raise FetchError(url, "invalid_url", "the URL has no host name.")
    return parsed


def _read_capped(response: httpx.Response, url: str, deadline: float, max_bytes: int) -> bytes:
    """Stream the body, stopping as soon as it exceeds ``max_bytes`` or the deadline passes."""
    too_large = f"the image is larger than the limit of {max_bytes} bytes."
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(url, "too_large", too_large)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(url, "too_large", too_large)
        if time.monotonic() > deadline:
            raise FetchError(url, "timeout", "the server sent the image too slowly.")
    return bytes(body)


def fetch_url(url: str, policy: FetchPolicy | None = None) -> bytes:
    """GET ``url`` under ``policy`` (default: ``FetchPolicy()``) and return the body bytes.

    Raises FetchError for every refusal and failure (bad scheme, non-public address, DNS
    failure, too many redirects, body too large, time budget spent, non-2xx status,
    connection error). Blocking; meant to run in a worker thread.
    """
    policy = FetchPolicy() if policy is None else policy
    deadline = time.monotonic() + policy.timeout_s
    headers = {"User-Agent": policy.user_agent, "Accept": "image/*", "Accept-Encoding": "identity"}
    current = url
    with httpx.Client(
        transport=_PublicOnlyTransport(policy),
        headers=headers,
        follow_redirects=False,
        trust_env=False,
    ) as client:
        for _hop in range(policy.max_redirects + 1):
            try:
                body, location = _fetch_one_hop(client, current, policy, deadline)
            except FetchError as exc:
                if current == url:
                    raise
                # The user only knows the URL they sent: say how we got to this one.
                detail = f"{exc.detail[:-1]} (reached by a redirect from {_shorten(url)})."
                raise FetchError(exc.url, exc.reason, detail) from None
            if location is None:
                return body
            current = location
    raise FetchError(
        url, "too_many_redirects", f"it redirected more than {policy.max_redirects} times."
    )


def _fetch_one_hop(
    client: httpx.Client, url: str, policy: FetchPolicy, deadline: float
) -> tuple[bytes, str | None]:
    """GET ``url`` once: (body, None) on success, (b"", next URL) on a redirect."""
    target = _checked_url(url)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(url, "timeout", f"it took longer than {policy.timeout_s} s.")
    timeout = httpx.Timeout(remaining, connect=min(policy.connect_timeout_s, remaining))
    try:
        with client.stream("GET", target, timeout=timeout) as response:
            if response.is_redirect:
                location = response.headers["location"]
                try:
                    return b"", str(target.join(location))
                except httpx.InvalidURL:
                    detail = f"it redirects to an invalid URL {location!r}."
                    raise FetchError(url, "invalid_url", detail) from None
            if not response.is_success:
                status = f"{response.status_code} {response.reason_phrase}".strip()
                raise FetchError(url, "http_status", f"the server answered HTTP {status}.")
            return _read_capped(response, url, deadline, policy.max_bytes), None
    except _HostRejectedError as rejected:
        raise FetchError(url, rejected.reason, rejected.detail) from None
    except httpx.TimeoutException:
        detail = f"it took longer than the time limit of {policy.timeout_s} s."
        raise FetchError(url, "timeout", detail) from None
    except httpx.HTTPError as exc:
        detail = f"the connection failed ({exc or type(exc).__name__})."
        raise FetchError(url, "connection", detail) from None


def post_bytes(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: FetchPolicy,
    timeout_s: float | None = None,
) -> int:
    """POST ``body`` to ``url`` under the address rules of ``fetch_url``; return the status.

    Redirects are not followed (a 3xx status is returned like any other) and the response
    body is not read. ``timeout_s`` (default ``policy.timeout_s``) bounds each network step;
    connecting gets at most ``policy.connect_timeout_s`` of it. Raises FetchError for
    refusals (scheme, credentials, invalid_url, private_address) and failures (dns,
    timeout, connection); every HTTP status, 4xx and 5xx included, is returned, not raised.
    Blocking; meant to run in a worker thread.
    """
    target = _checked_url(url)
    budget = policy.timeout_s if timeout_s is None else timeout_s
    if budget <= 0:
        raise ValueError(f"post_bytes timeout_s must be positive, got {budget}")
    timeout = httpx.Timeout(budget, connect=min(policy.connect_timeout_s, budget))
    with httpx.Client(
        transport=_PublicOnlyTransport(policy),
        headers={"User-Agent": policy.user_agent},
        follow_redirects=False,
        trust_env=False,
    ) as client:
        try:
            with client.stream(
                "POST", target, content=body, headers=dict(headers), timeout=timeout
            ) as response:
                return response.status_code
        except _HostRejectedError as rejected:
            raise FetchError(url, rejected.reason, rejected.detail) from None
        except httpx.TimeoutException:
            detail = f"it took longer than the time limit of {budget} s."
            raise FetchError(url, "timeout", detail) from None
        except httpx.HTTPError as exc:
            detail = f"the connection failed ({exc or type(exc).__name__})."
            raise FetchError(url, "connection", detail) from None

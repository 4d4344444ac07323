"""photoremix.net.fetch: SSRF refusals, limits and redirects, against a loopback HTTP server.

Every connection these tests make goes to a local ``http.server`` on 127.0.0.1; the autouse
fixture fails any test whose code tries to open a socket to another address.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from photoremix.net import FetchError, FetchPolicy, fetch_url, non_public_kind

IMAGE_BYTES = bytes(range(256)) * 40  # 10 240 bytes, every byte value
LOOPBACK_ONLY = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # needed for chunked bodies

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, chunks: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/image":
            self._send(200, IMAGE_BYTES, {"Content-Type": "image/jpeg"})
        elif parts.path == "/chunked":
            self._send_chunked(
                [IMAGE_BYTES[i : i + 1000] for i in range(0, len(IMAGE_BYTES), 1000)]
            )
        elif parts.path.startswith("/hops/"):
            # /hops/N (N >= 1) redirects N times (relative Locations), then serves the image.
            left = int(parts.path.removeprefix("/hops/"))
            location = f"/hops/{left - 1}" if left > 1 else "/image"
            self._send(302, headers={"Location": location})
        elif parts.path == "/redirect":
            self._send(302, headers={"Location": query["to"][0]})
        elif parts.path == "/declares-huge":
            # Claims 1 GB, sends a little, then stalls: only an early refusal is quick.
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.wfile.flush()
            time.sleep(3)
        elif parts.path == "/sleep-before-headers":
            time.sleep(3)
            self._send(200, IMAGE_BYTES)
        elif parts.path == "/drip":
            # Each byte arrives well within a read timeout; the whole body does not.
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self._send(404, b"not found")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the fetcher hanging up mid-body (the point of several tests) is not an error


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Base URL ("http://127.0.0.1:<port>") of a loopback server running ``_Handler``."""
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to connect to a non-loopback address."""
    real_create_connection = socket.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host = address[0].split("%")[0]
        try:
            is_loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: the fetcher must connect to the address it checked
            pytest.fail(f"test tried to connect by host name: {address}")
        if not is_loopback:
            pytest.fail(f"test tried to connect to {address}")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


def _fake_dns(
    monkeypatch: pytest.MonkeyPatch, host: str, answers: list[str]
) -> list[tuple[Any, ...]]:
    """Make ``host`` resolve to answers[0] on the first lookup, answers[1] on the second, ...
    (the last answer repeats). Other hosts resolve normally. Returns the recorded lookups."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[tuple[Any, ...]] = []

    def fake(name: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real_getaddrinfo(name, port, *args, **kwargs)
        lookups.append((name, port))
        answer = answers[min(len(lookups), len(answers)) - 1]
        return real_getaddrinfo(answer, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return lookups


def _refusal(url: str, policy: FetchPolicy | None = None) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_url(url, policy)
    return caught.value


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1/a.jpg", "127.0.0.1"),
        ("http://localhost/a.jpg", "127.0.0.1"),
        ("http://[::1]/a.jpg", "::1"),
        ("http://10.0.0.5/a.jpg", "10.0.0.5"),
        ("https://192.168.1.20/a.jpg", "192.168.1.20"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "::ffff:127.0.0.1"),
    ],
)
def test_default_policy_refuses_non_public_addresses(url: str, address: str) -> None:
    error = _refusal(url)
    assert error.reason == "private_address"
    assert error.url == url
    assert url in str(error) and f"resolves to {address}," in str(error)


def test_error_is_a_value_error_with_the_documented_message() -> None:
    error = _refusal("http://10.0.0.5/a.jpg")
    assert isinstance(error, ValueError)
    assert str(error) == (
        "Refused to fetch http://10.0.0.5/a.jpg: it resolves to 10.0.0.5, a private address."
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.jpg", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme"),
        ("example.com/a.jpg", "scheme"),
        ("http://user:secret@example.com/a.jpg", "credentials"),
        ("http:///a.jpg", "invalid_url"),
    ],
)
def test_refuses_urls_that_are_not_plain_http(url: str, reason: str) -> None:
    assert _refusal(url).reason == reason


def test_long_urls_are_shortened_in_the_message_only() -> None:
    url = "data:image/png;base64," + "A" * 100_000
    error = _refusal(url)
    assert error.url == url
    assert len(str(error)) < 400


def test_hostname_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups = _fake_dns(monkeypatch, "images.example.com", ["127.0.0.1"])
    error = _refusal("http://images.example.com/a.jpg")
    assert error.reason == "private_address"
    assert "127.0.0.1" in str(error)
    assert len(lookups) == 1


def test_any_non_public_answer_refuses_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def public_and_private(name: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != "mixed.example.com":
            return real_getaddrinfo(name, port, *args, **kwargs)
        return real_getaddrinfo("8.8.8.8", port, *args, **kwargs) + real_getaddrinfo(
            "10.1.2.3", port, *args, **kwargs
        )

    monkeypatch.setattr(socket, "getaddrinfo", public_and_private)
    error = _refusal("http://mixed.example.com/a.jpg")
    assert error.reason == "private_address" and "10.1.2.3" in str(error)


def test_connects_to_the_address_it_checked_without_a_second_lookup(
    monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    """DNS rebinding: the first answer is allowed, every later answer is a private address.
    A check-then-connect fetcher would look the name up again and connect to 10.0.0.5 (which
    the loopback guard turns into a failure); this one connects to the checked 127.0.0.1."""
    lookups = _fake_dns(monkeypatch, "rebind.example.com", ["127.0.0.1", "10.0.0.5"])
    port = urlsplit(server).port
    body = fetch_url(f"http://rebind.example.com:{port}/image", LOOPBACK_ONLY)
    assert body == IMAGE_BYTES
    assert len(lookups) == 1


def test_the_check_uses_the_connect_time_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding the other way round: a validator looked the name up earlier and saw a
    public address; the answer the fetcher gets when it connects is loopback -> refused."""
    lookups = _fake_dns(monkeypatch, "rebind.example.com", ["93.184.216.34", "127.0.0.1"])
    earlier = socket.getaddrinfo("rebind.example.com", 80)  # the earlier validation lookup
    assert non_public_kind(ipaddress.ip_address(earlier[0][4][0])) is None
    error = _refusal("http://rebind.example.com/a.jpg")
    assert error.reason == "private_address" and "127.0.0.1" in str(error)
    assert len(lookups) == 2


def test_tls_uses_the_url_hostname_while_connecting_to_the_checked_ip(
    monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    """Certificate check and SNI must name the URL's host, not the IP literal we dial."""
    _fake_dns(monkeypatch, "secure.example.com", ["127.0.0.1"])
    handshakes: list[tuple[str | None, str]] = []

    def record_handshake(self: ssl.SSLContext, sock: socket.socket, **kwargs: Any) -> Any:
        handshakes.append((kwargs.get("server_hostname"), sock.getpeername()[0]))
        raise ssl.SSLError("handshake stopped by the test")

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", record_handshake)
    port = urlsplit(server).port
    error = _refusal(f"https://secure.example.com:{port}/image", LOOPBACK_ONLY)
    assert error.reason == "connection"
    assert handshakes == [("secure.example.com", "127.0.0.1")]


def test_unresolvable_host_is_a_dns_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(name: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    error = _refusal("http://nowhere.invalid/a.jpg")
    assert error.reason == "dns" and "nowhere.invalid" in str(error)


@pytest.mark.parametrize(
    ("allowed", "host"),
    [("127.0.0.1", "127.0.0.1"), ("127.0.0.0/8", "127.0.0.1"), ("localhost", "localhost")],
)
def test_allowlisted_loopback_server_returns_exact_bytes(
    server: str, allowed: str, host: str
) -> None:
    url = server.replace("127.0.0.1", host) + "/image"
    policy = FetchPolicy(allow_hosts=frozenset({allowed}))
    assert fetch_url(url, policy) == IMAGE_BYTES


def test_chunked_body_is_reassembled(server: str) -> None:
    assert fetch_url(f"{server}/chunked", LOOPBACK_ONLY) == IMAGE_BYTES


def test_redirect_chain_within_the_cap_is_followed(server: str) -> None:
    policy = FetchPolicy(max_redirects=3, allow_hosts=frozenset({"127.0.0.1"}))
    assert fetch_url(f"{server}/hops/3", policy) == IMAGE_BYTES


def test_redirect_chain_over_the_cap_is_refused(server: str) -> None:
    policy = FetchPolicy(max_redirects=3, allow_hosts=frozenset({"127.0.0.1"}))
    error = _refusal(f"{server}/hops/4", policy)
    assert error.reason == "too_many_redirects"
    assert error.url == f"{server}/hops/4" and "3 times" in str(error)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://192.168.1.10/a.jpg", "private_address"),
        ("http://127.0.0.2/a.jpg", "private_address"),
        ("file:///etc/passwd", "scheme"),
    ],
)
def test_every_redirect_hop_is_checked(server: str, target: str, reason: str) -> None:
    start = f"{server}/redirect?to={target}"
    error = _refusal(start, LOOPBACK_ONLY)
    assert error.reason == reason
    assert error.url == str(httpx.URL(target))  # httpx writes file:///x as file:/x
    assert f"redirect from {start}" in str(error)


def test_body_over_the_limit_is_refused_without_content_length(server: str) -> None:
    policy = FetchPolicy(max_bytes=len(IMAGE_BYTES) - 1, allow_hosts=frozenset({"127.0.0.1"}))
    assert _refusal(f"{server}/chunked", policy).reason == "too_large"
    # One byte more is enough: the limit is inclusive.
    policy = FetchPolicy(max_bytes=len(IMAGE_BYTES), allow_hosts=frozenset({"127.0.0.1"}))
    assert fetch_url(f"{server}/chunked", policy) == IMAGE_BYTES


def test_body_over_the_limit_is_refused_with_content_length(server: str) -> None:
    policy = FetchPolicy(max_bytes=len(IMAGE_BYTES) - 1, allow_hosts=frozenset({"127.0.0.1"}))
    assert _refusal(f"{server}/image", policy).reason == "too_large"


def test_declared_oversize_is_refused_before_reading(server: str) -> None:
    policy = FetchPolicy(max_bytes=1000, timeout_s=2.0, allow_hosts=frozenset({"127.0.0.1"}))
    started = time.monotonic()
    error = _refusal(f"{server}/declares-huge", policy)
    assert error.reason == "too_large"
    assert time.monotonic() - started < 1.0  # did not wait for the stalled body


@pytest.mark.parametrize("path", ["/sleep-before-headers", "/drip"])
def test_slow_server_times_out_within_the_budget(server: str, path: str) -> None:
    policy = FetchPolicy(timeout_s=0.5, allow_hosts=frozenset({"127.0.0.1"}))
    started = time.monotonic()
    error = _refusal(f"{server}{path}", policy)
    elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert 0.4 < elapsed < 1.5


def test_not_found_is_an_http_status_error(server: str) -> None:
    error = _refusal(f"{server}/missing.jpg", LOOPBACK_ONLY)
    assert error.reason == "http_status" and "404" in str(error)


def test_closed_port_is_a_connection_error(server: str) -> None:
    with socket.socket() as probe:  # bind then close: a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = _refusal(f"http://127.0.0.1:{port}/a.jpg", LOOPBACK_ONLY)
    assert error.reason == "connection"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("0.0.0.0", "an unspecified address"),
        ("127.8.9.10", "a loopback address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.251", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("172.16.5.4", "a private address"),
        ("fd00::1", "a private address"),
        ("100.64.0.1", "a non-public address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::7f00:1", "a loopback address"),
        ("2002:c0a8:0101::1", "a private address"),
    ],
)
def test_non_public_kind(address: str, kind: str | None) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) == kind


def test_policy_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        FetchPolicy(max_bytes=0)
    with pytest.raises(ValueError, match="empty"):
        FetchPolicy(allow_hosts=frozenset({""}))
    with pytest.raises(TypeError, match="not one string"):
        FetchPolicy(allow_hosts="localhost")  # type: ignore[arg-type]

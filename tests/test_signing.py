"""UrlSigner: genuine URLs verify; altered, foreign or expired ones are refused."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from photoremix.storage import SignatureError, SignatureExpired, SignatureInvalid, UrlSigner

SECRET = b"test-secret-0123456789abcdef"
START = datetime(2026, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)
PATH = "/v1/downloads/outputs/job1/0.png"


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def split(url: str) -> tuple[str, str, str]:
    """(path, expires, signature) as the service will read them from a request."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, strict_parsing=True)
    assert sorted(query) == ["expires", "signature"]
    return parts.path, query["expires"][0], query["signature"][0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def signer(clock: FakeClock) -> UrlSigner:
    return UrlSigner(SECRET, clock=clock)


def test_signed_url_has_the_documented_shape(signer: UrlSigner) -> None:
    url = signer.sign(PATH)
    path, expires, signature = split(url)
    assert url == f"{PATH}?expires={expires}&signature={signature}"
    assert path == PATH
    # Default lifetime: 24 h from now, whole seconds.
    assert int(expires) == int((START + timedelta(hours=24)).timestamp())
    # Independent recomputation of the documented scheme.
    message = f"{PATH}\n{expires}".encode()
    assert signature == hmac.new(SECRET, message, hashlib.sha256).hexdigest()


def test_valid_url_verifies(signer: UrlSigner, clock: FakeClock) -> None:
    parts = split(signer.sign(PATH))
    signer.verify(*parts)
    clock.now = START + timedelta(hours=23, minutes=59)
    signer.verify(*parts)


def test_expired_after_ttl(signer: UrlSigner, clock: FakeClock) -> None:
    parts = split(signer.sign(PATH))
    clock.now = START + timedelta(hours=24)
    with pytest.raises(SignatureExpired, match="expired"):
        signer.verify(*parts)
    clock.now = START + timedelta(days=30)
    with pytest.raises(SignatureExpired):
        signer.verify(*parts)


def test_custom_ttl(clock: FakeClock) -> None:
    signer = UrlSigner(SECRET, ttl=timedelta(minutes=10), clock=clock)
    parts = split(signer.sign(PATH))
    clock.now = START + timedelta(minutes=9)
    signer.verify(*parts)
    clock.now = START + timedelta(minutes=11)
    with pytest.raises(SignatureExpired):
        signer.verify(*parts)


def test_tampered_path_is_invalid(signer: UrlSigner) -> None:
    _, expires, signature = split(signer.sign(PATH))
    for other in [PATH.replace("0.png", "1.png"), PATH + "/", PATH.upper(), "/v1/downloads/x"]:
        with pytest.raises(SignatureInvalid):
            signer.verify(other, expires, signature)


def test_tampered_expiry_is_invalid(signer: UrlSigner) -> None:
    path, expires, signature = split(signer.sign(PATH))
    for other in [str(int(expires) + 1), str(int(expires) + 86_400), "0" + expires]:
        with pytest.raises(SignatureInvalid):
            signer.verify(path, other, signature)


@pytest.mark.parametrize(
    "expires", ["", "-5", "1e9", "12.5", " 123", "\u0661\u0662\u0663", "9" * 40]
)
def test_malformed_expiry_is_invalid(signer: UrlSigner, expires: str) -> None:
    with pytest.raises(SignatureInvalid):
        signer.verify(PATH, expires, "0" * 64)


def test_tampered_signature_is_invalid(signer: UrlSigner) -> None:
    path, expires, signature = split(signer.sign(PATH))
    flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
    for other in [flipped, signature[:-1], signature + "0", "", "zz" * 32, "\u00e9" * 64]:
        with pytest.raises(SignatureInvalid):
            signer.verify(path, expires, other)


def test_different_secret_is_invalid(signer: UrlSigner, clock: FakeClock) -> None:
    parts = split(signer.sign(PATH))
    other = UrlSigner(b"another-secret-0123456789", clock=clock)
    with pytest.raises(SignatureInvalid):
        other.verify(*parts)
    # And the other way round: the first signer rejects the other's URLs.
    with pytest.raises(SignatureInvalid):
        signer.verify(*split(other.sign(PATH)))


def test_forged_url_is_invalid_even_when_expired(signer: UrlSigner, clock: FakeClock) -> None:
    # Signature is checked first, so a forgery never learns anything from "expired".
    clock.now = START + timedelta(days=2)
    with pytest.raises(SignatureInvalid):
        signer.verify(PATH, str(int(START.timestamp())), "0" * 64)


def test_both_errors_share_a_base_class() -> None:
    assert issubclass(SignatureExpired, SignatureError)
    assert issubclass(SignatureInvalid, SignatureError)
    assert not issubclass(SignatureExpired, SignatureInvalid)


@pytest.mark.parametrize("path", ["", "/a?b=1", "/a#frag", "/a b", "/caf\u00e9", "/a\nb"])
def test_sign_refuses_paths_that_would_not_round_trip(signer: UrlSigner, path: str) -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        signer.sign(path)


@pytest.mark.parametrize(
    ("secret", "ttl"),
    [
        (b"short", timedelta(hours=1)),
        ("a-str-secret-0123456789", timedelta(hours=1)),
        (SECRET, timedelta(0)),
        (SECRET, timedelta(seconds=-1)),
    ],
)
def test_bad_configuration_is_refused(secret: bytes, ttl: timedelta) -> None:
    with pytest.raises(ValueError):
        UrlSigner(secret, ttl=ttl)


def test_naive_clock_is_refused() -> None:
    signer = UrlSigner(SECRET, clock=lambda: datetime(2026, 5, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        signer.sign(PATH)

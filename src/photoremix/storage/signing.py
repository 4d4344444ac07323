"""Signed download URLs: ``<path>?expires=<unix>&signature=<hex>``.

The scheme (clients never compute it; this is so they can reason about it):

- ``expires`` is a Unix time in whole seconds (UTC): the link works while the server's
  clock is before it, i.e. for ``ttl`` (24 h by default) after it was issued.
- ``signature`` is the lowercase hex of ``HMAC-SHA256(secret, f"{path}\\n{expires}")``,
  64 characters, where ``secret`` is known only to the server and ``path`` is the URL path
  exactly as signed (already percent-encoded; no query string, no fragment).
- Changing any byte of the path, the expiry or the signature makes the link invalid, and
  a link signed with another secret is invalid; expired and invalid links are both
  refused (the service answers 403). The only fix for a client is to request the output
  again. Verification compares signatures in constant time.

The URL is relative: the service puts its own base URL in front of it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from photoremix.storage.base import require_aware, utcnow

DEFAULT_TTL: Final = timedelta(hours=24)
MIN_SECRET_BYTES: Final = 16
# Visible ASCII without "?" and "#": anything else would not survive as a URL path verbatim.
_PATH: Final = re.compile(r"[\x21\x22\x24-\x3e\x40-\x7e]+", re.ASCII)
_EXPIRES: Final = re.compile(r"[0-9]{1,12}", re.ASCII)
_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}", re.ASCII)


class SignatureError(Exception):
    """A download URL was refused; the message is safe to show to a user."""


class SignatureInvalid(SignatureError):  # noqa: N818 (name fixed by the service spec)
    """The URL was not issued by this server, or was altered after it was."""


class SignatureExpired(SignatureError):  # noqa: N818 (name fixed by the service spec)
    """The URL was genuine but its ``expires`` time has passed."""


class UrlSigner:
    """Issues and checks signed download URLs (see the module docstring for the scheme).

    secret: at least 16 random bytes (e.g. ``secrets.token_bytes(32)``); same on every
        server instance, or URLs issued by one fail on another.
    ttl: how long an issued URL stays valid; positive.
    clock: returns the current timezone-aware datetime (inject a fake one in tests).
    """

    def __init__(
        self,
        secret: bytes,
        ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"URL signing secret must be at least {MIN_SECRET_BYTES} bytes; "
                "generate one with secrets.token_bytes(32)"
            )
        if ttl <= timedelta(0):
            raise ValueError(f"URL lifetime (ttl) must be positive, got {ttl}")
        self._secret = secret
        self.ttl: timedelta = ttl
        self._clock = clock

    def sign(self, path: str) -> str:
        """Return ``path?expires=<unix>&signature=<hex>``, valid for ``ttl`` from now."""
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            raise ValueError(
                f"cannot sign {path!r}: expected a non-empty URL path of visible ASCII "
                "without '?' or '#'"
            )
        expires = str(math.floor((self._now() + self.ttl).timestamp()))
        return f"{path}?expires={expires}&signature={self._signature(path, expires)}"

    def verify(self, path: str, expires: str, signature: str) -> None:
        """Return if the URL is genuine and unexpired; else raise a ``SignatureError``.

        Raises ``SignatureInvalid`` (malformed or wrong signature, malformed ``expires``,
        altered path) before ever looking at the time, then ``SignatureExpired``.
        """
        if not (
            isinstance(path, str)
            and isinstance(expires, str)
            and isinstance(signature, str)
            and _EXPIRES.fullmatch(expires)
            and _SIGNATURE.fullmatch(signature)
        ):
            raise SignatureInvalid("download link is malformed; use the URL exactly as returned")
        expected = self._signature(path, expires)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            raise SignatureInvalid("download link signature is invalid; use the URL as returned")
        if self._now().timestamp() >= int(expires):
            raise SignatureExpired("download link has expired; request the output again")

    def _signature(self, path: str, expires: str) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _now(self) -> datetime:
        return require_aware(self._clock(), "clock()")

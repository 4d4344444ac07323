"""The interface every output store implements, and the key rules they all share.

A key is a "/"-separated relative path, e.g. ``"outputs/2f9c1e/0.png"``. Each segment is
1..200 characters from ``[A-Za-z0-9._-]`` and is neither ``"."`` nor ``".."``; the whole key
is at most 1024 characters (S3's limit). Anything else (absolute paths, backslashes, empty
segments, non-ASCII, dot segments) raises ``InvalidKey``, so a key can never name a file
outside a store's root.

A prefix names a folder of keys: ``delete_prefix("outputs/2f9c1e")`` removes every key
that starts with ``"outputs/2f9c1e/"`` (a trailing "/" is optional) and never the key
``"outputs/2f9c1e"`` itself nor ``"outputs/2f9c1e7/..."``. This is what S3 later does with
``Prefix="outputs/2f9c1e/"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol, runtime_checkable

MAX_KEY_LENGTH: Final = 1024
MAX_SEGMENT_LENGTH: Final = 200
_SEGMENT: Final = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_SEGMENT_LENGTH}}}", re.ASCII)
# A MIME type with optional parameters, printable ASCII only: it ends up in a
# Content-Type header, so control characters (header injection) must never get through.
_CONTENT_TYPE: Final = re.compile(
    r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;[ -~]*)?", re.ASCII
)


class StorageError(Exception):
    """Base class of every storage error; the message is safe to show to a user."""


class InvalidKey(StorageError, ValueError):  # noqa: N818 (name fixed by the service spec)
    """A key or prefix breaks the key rules (see the module docstring)."""


class ContentTypeError(StorageError, ValueError):
    """A content type is not a plain ``type/subtype[; params]`` in printable ASCII."""


class ObjectNotFound(StorageError, LookupError):  # noqa: N818 (name fixed by the service spec)
    """No object is stored under the key (never stored, deleted, or expired)."""


@dataclass(frozen=True)
class StoredObject:
    """One stored object.

    data: the bytes exactly as stored.
    content_type: the MIME type given to ``put``, e.g. ``"image/png"``.
    created_at: when ``put`` stored it; timezone-aware UTC.
    """

    data: bytes
    content_type: str
    created_at: datetime


@runtime_checkable
class Storage(Protocol):
    """Where outputs live between a request and their download (or retention cleanup)."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any object already there.

        Raises ``InvalidKey`` or ``ContentTypeError``.
        """
        ...

    def get(self, key: str) -> StoredObject:
        """Return the object under ``key``. Raises ``ObjectNotFound`` or ``InvalidKey``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object under ``key``; a missing object is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix + "/"``; return how many."""
        ...

    def delete_older_than(self, cutoff: datetime, prefix: str | None = None) -> int:
        """Remove every object created strictly before ``cutoff`` (aware), only under
        ``prefix + "/"`` when given; return how many."""
        ...


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default clock of stores and signers)."""
    return datetime.now(UTC)


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it follows the key rules, else raise ``InvalidKey``."""
    if not isinstance(key, str):
        raise InvalidKey(f"storage key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidKey("storage key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(
            f"storage key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(
                f"storage key {key!r} has an empty, '.' or '..' segment; "
                "use a relative path like 'outputs/abc/0.png'"
            )
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKey(
                f"storage key {key!r} has an invalid segment {segment!r}: segments are 1 to "
                f"{MAX_SEGMENT_LENGTH} characters from A-Z, a-z, 0-9, '.', '_' and '-'"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` without its optional trailing "/" if valid, else raise ``InvalidKey``.

    An empty prefix is refused: "delete everything" is never what a caller means by accident.
    """
    if isinstance(prefix, str) and prefix.endswith("/"):
        prefix = prefix[:-1]
    if prefix == "":
        raise InvalidKey("storage prefix is empty; name a folder such as 'outputs/abc'")
    return validate_key(prefix)


def validate_content_type(content_type: str) -> str:
    """Return ``content_type`` if it is ``type/subtype[; params]`` in printable ASCII."""
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise ContentTypeError(
            f"content type {content_type!r} is not a MIME type such as 'image/png'"
        )
    return content_type


def require_aware(moment: datetime, what: str) -> datetime:
    """Return ``moment`` if it carries a timezone; naive datetimes are ambiguous here."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. datetime.now(UTC)), got {moment!r}")
    return moment

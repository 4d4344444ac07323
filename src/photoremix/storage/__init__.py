"""Where outputs live until downloaded, and the signed URLs that download them.

``Storage`` is the interface (``LocalStorage`` today, S3 later); ``UrlSigner`` issues and
checks the 24-hour download links the service hands out in ``response_mode="urls"``.
"""

from photoremix.storage.base import (
    ContentTypeError,
    InvalidKey,
    ObjectNotFound,
    Storage,
    StorageError,
    StoredObject,
    utcnow,
    validate_key,
    validate_prefix,
)
from photoremix.storage.local import LocalStorage
from photoremix.storage.signing import (
    SignatureError,
    SignatureExpired,
    SignatureInvalid,
    UrlSigner,
)

__all__ = [
    "ContentTypeError",
    "InvalidKey",
    "LocalStorage",
    "ObjectNotFound",
    "SignatureError",
    "SignatureExpired",
    "SignatureInvalid",
    "Storage",
    "StorageError",
    "StoredObject",
    "UrlSigner",
    "utcnow",
    "validate_key",
    "validate_prefix",
]

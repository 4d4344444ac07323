"""Output storage in a local folder.

Layout under ``root``: the object with key ``"outputs/abc/0.png"`` is the file
``root/outputs/abc/0.png`` holding exactly the stored bytes, and beside it the sidecar
``root/outputs/abc/0.png~meta.json``::

    {"content_type": "image/png", "created_at": "2026-05-01T12:00:00+00:00"}

In-flight writes are temporary files named ``<name>~tmp.<random>`` in the same folder.
"~" is not allowed in keys, so no key can ever collide with a sidecar or a temporary file.

Atomicity: ``put`` writes the sidecar and the data to temporary files, fsyncs them, then
renames the sidecar into place and the data last (``os.replace``), then fsyncs the folder.
The data file is what makes an object exist, so a crash never leaves a half-written object
and a put that did not finish never becomes visible; its leftovers (a temporary file, or a
sidecar without data) are removed by ``delete_older_than``. The one window left is a crash
between the two renames while *overwriting* a key: the new content type then sits beside
the old bytes. Outputs are written once under fresh keys, so the service never hits it.

If a sidecar is missing or unreadable, ``get`` falls back to
``application/octet-stream`` and the data file's mtime.

Concurrency: puts of different keys from many threads (or processes) are safe; concurrent
puts of the same key are last-writer-wins. A key cannot be both an object and a folder
(``"a"`` and ``"a/b"``): the second put raises ``InvalidKey``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from photoremix.storage.base import (
    InvalidKey,
    ObjectNotFound,
    StoredObject,
    require_aware,
    utcnow,
    validate_content_type,
    validate_key,
    validate_prefix,
)

SIDECAR_SUFFIX: Final = "~meta.json"
TEMP_MARKER: Final = "~tmp."
FALLBACK_CONTENT_TYPE: Final = "application/octet-stream"
# A concurrent cleanup may remove a freshly created, still empty folder before put writes
# into it; put then simply creates it again.
_PUT_ATTEMPTS: Final = 5


class LocalStorage:
    """``Storage`` backed by files under ``root`` (created if missing).

    clock: returns the current aware datetime; stamped as ``created_at`` by ``put``
        (inject a fake one in tests).
    """

    def __init__(self, root: Path | str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.root: Path = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock

    # ---- Storage interface -------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        validate_content_type(content_type)
        created_at = require_aware(self._clock(), "clock()").astimezone(UTC)
        sidecar = json.dumps({"content_type": content_type, "created_at": created_at.isoformat()})
        for attempt in range(_PUT_ATTEMPTS):
            try:
                self._make_parent(key, path)
                sidecar_tmp = _write_temp(path, sidecar.encode("utf-8"))
                try:
                    data_tmp = _write_temp(path, data)
                except BaseException:
                    _unlink(sidecar_tmp)
                    raise
                break
            except FileNotFoundError:
                if attempt == _PUT_ATTEMPTS - 1:
                    raise
        try:
            os.replace(sidecar_tmp, _sidecar(path))
            os.replace(data_tmp, path)
        except IsADirectoryError:
            _unlink(sidecar_tmp)
            _unlink(data_tmp)
            _unlink(_sidecar(path))
            raise InvalidKey(
                f"storage key {key!r} is already a folder of other keys; pick another key"
            ) from None
        except BaseException:
            _unlink(sidecar_tmp)
            _unlink(data_tmp)
            raise
        _fsync_dir(path.parent)

    def get(self, key: str) -> StoredObject:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no stored object under key {key!r}") from None
        content_type, created_at = self._read_meta(path)
        return StoredObject(data=data, content_type=content_type, created_at=created_at)

    def delete(self, key: str) -> None:
        path = self._path(key)
        self._delete_object(path)
        self._prune_empty_dirs(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(validate_prefix(prefix))
        if not folder.is_dir():
            return 0
        deleted = sum(self._delete_object(path) for path in _object_files(folder))
        for directory, _, _ in os.walk(folder, topdown=False):
            _rmdir_if_empty(Path(directory))
        self._prune_empty_dirs(folder.parent)
        return deleted

    def delete_older_than(self, cutoff: datetime, prefix: str | None = None) -> int:
        cutoff = require_aware(cutoff, "cutoff")
        folder = self.root if prefix is None else self._path(validate_prefix(prefix))
        deleted = 0
        for path in _object_files(folder):
            if self._read_meta(path)[1] < cutoff and self._delete_object(path):
                deleted += 1
        # Leftovers of puts that crashed: temporary files and sidecars without data.
        for directory, _, names in os.walk(self.root):
            for name in names:
                path = Path(directory) / name
                orphan_sidecar = name.endswith(SIDECAR_SUFFIX) and not (
                    path.with_name(name.removesuffix(SIDECAR_SUFFIX)).exists()
                )
                if (TEMP_MARKER in name or orphan_sidecar) and _mtime(path) < cutoff:
                    _unlink(path)
        for directory, _, _ in os.walk(self.root, topdown=False):
            if Path(directory) != self.root:
                _rmdir_if_empty(Path(directory))
        return deleted

    # ---- helpers -----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        # validate_key already makes escaping impossible; joining plain segments keeps it so.
        return self.root.joinpath(*validate_key(key).split("/"))

    def _make_parent(self, key: str, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidKey(
                f"storage key {key!r} lies under a path that is already an object; pick another key"
            ) from None

    def _read_meta(self, path: Path) -> tuple[str, datetime]:
        """(content_type, created_at) from the sidecar, or the documented fallbacks."""
        try:
            meta = json.loads(_sidecar(path).read_text(encoding="utf-8"))
            created_at = datetime.fromisoformat(meta["created_at"])
            return validate_content_type(meta["content_type"]), require_aware(
                created_at, "sidecar created_at"
            )
        except (OSError, ValueError, KeyError, TypeError):
            return FALLBACK_CONTENT_TYPE, _mtime(path)

    def _delete_object(self, path: Path) -> bool:
        """Remove data then sidecar (data first: the object vanishes in one step)."""
        existed = _unlink(path)
        _unlink(_sidecar(path))
        return existed

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and directory.is_relative_to(self.root):
            if not _rmdir_if_empty(directory):
                return
            directory = directory.parent


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _object_files(folder: Path) -> Iterator[Path]:
    """Every object data file under ``folder`` (sidecars and temporary files skipped)."""
    for directory, _, names in os.walk(folder):
        for name in names:
            if "~" not in name:
                yield Path(directory) / name


def _write_temp(final_path: Path, payload: bytes) -> Path:
    """Write ``payload`` to a fsynced temporary file beside ``final_path``; return its path."""
    fd, temp_name = tempfile.mkstemp(dir=final_path.parent, prefix=final_path.name + TEMP_MARKER)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        _unlink(Path(temp_name))
        raise
    return Path(temp_name)


def _fsync_dir(directory: Path) -> None:
    # Makes the renames themselves durable; some filesystems refuse, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink(path: Path) -> bool:
    """Remove a file; return whether it existed."""
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    return True


def _rmdir_if_empty(directory: Path) -> bool:
    try:
        directory.rmdir()
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            return False
        raise
    return True


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.max.replace(tzinfo=UTC)  # vanished meanwhile: never "old"

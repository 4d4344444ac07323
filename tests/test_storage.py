"""LocalStorage: round trips, deletion, retention, key safety, atomic and concurrent writes."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from photoremix.storage import (
    InvalidKey,
    LocalStorage,
    ObjectNotFound,
    Storage,
    StorageError,
    validate_key,
)
from photoremix.storage.base import ContentTypeError

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def storage(tmp_path: Path, clock: FakeClock) -> LocalStorage:
    return LocalStorage(tmp_path / "store", clock=clock)


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_local_storage_satisfies_the_protocol(storage: LocalStorage) -> None:
    assert isinstance(storage, Storage)


@pytest.mark.parametrize(
    ("key", "data", "content_type"),
    [
        ("outputs/job1/0.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "image/png"),
        ("outputs/job1/1.jpg", b"\xff\xd8\xff" + os.urandom(1000), "image/jpeg"),
        ("reports/job1.json", b'{"ok": true}', "application/json; charset=utf-8"),
        ("empty", b"", "application/octet-stream"),
    ],
)
def test_put_get_round_trip(
    storage: LocalStorage, key: str, data: bytes, content_type: str
) -> None:
    storage.put(key, data, content_type)
    stored = storage.get(key)
    assert stored.data == data
    assert stored.content_type == content_type
    assert stored.created_at == START
    # A fresh store over the same folder sees the same object (nothing kept in memory).
    assert LocalStorage(storage.root).get(key) == stored


def test_object_bytes_are_stored_verbatim_on_disk(storage: LocalStorage) -> None:
    storage.put("a/b.png", b"pixels", "image/png")
    assert (storage.root / "a" / "b.png").read_bytes() == b"pixels"


def test_overwrite_replaces_data_type_and_time(storage: LocalStorage, clock: FakeClock) -> None:
    storage.put("k.bin", b"first", "image/png")
    clock.now = START + timedelta(minutes=5)
    storage.put("k.bin", b"second, longer", "image/jpeg")
    stored = storage.get("k.bin")
    assert (stored.data, stored.content_type, stored.created_at) == (
        b"second, longer",
        "image/jpeg",
        START + timedelta(minutes=5),
    )


def test_get_missing_raises_object_not_found(storage: LocalStorage) -> None:
    with pytest.raises(ObjectNotFound, match=re.escape("nope/x.png")):
        storage.get("nope/x.png")
    storage.put("dir/x.png", b"1", "image/png")
    with pytest.raises(ObjectNotFound):  # a folder is not an object
        storage.get("dir")


def test_delete_is_idempotent(storage: LocalStorage) -> None:
    storage.put("jobs/1/out.png", b"x", "image/png")
    storage.put("jobs/1/keep.png", b"y", "image/png")
    storage.delete("jobs/1/out.png")
    with pytest.raises(ObjectNotFound):
        storage.get("jobs/1/out.png")
    storage.delete("jobs/1/out.png")  # again: no error
    storage.delete("never/stored.png")
    assert storage.get("jobs/1/keep.png").data == b"y"
    assert all_files(storage.root) == ["jobs/1/keep.png", "jobs/1/keep.png~meta.json"]


def test_delete_prefix_removes_exactly_that_folder(storage: LocalStorage) -> None:
    keys = ["jobs/1/a.png", "jobs/1/b.png", "jobs/1/deep/c.png", "jobs/12/a.png", "jobs/1x"]
    for key in keys:
        storage.put(key, key.encode(), "image/png")
    assert storage.delete_prefix("jobs/1") == 3
    for key in keys[:3]:
        with pytest.raises(ObjectNotFound):
            storage.get(key)
    # A sibling whose name merely starts with the same characters survives.
    assert storage.get("jobs/12/a.png").data == b"jobs/12/a.png"
    assert storage.get("jobs/1x").data == b"jobs/1x"
    assert not (storage.root / "jobs" / "1").exists()  # emptied folders are removed
    assert storage.delete_prefix("jobs/12/") == 1  # trailing slash accepted
    assert storage.delete_prefix("jobs/12") == 0
    assert storage.delete_prefix("nothing/here") == 0


def test_delete_prefix_refuses_empty_and_unsafe_prefixes(storage: LocalStorage) -> None:
    storage.put("a/b", b"x", "text/plain")
    for prefix in ["", "/", "..", "../a", "/a"]:
        with pytest.raises(InvalidKey):
            storage.delete_prefix(prefix)
    assert storage.get("a/b").data == b"x"


def test_delete_older_than_uses_created_at(storage: LocalStorage, clock: FakeClock) -> None:
    storage.put("old/1.png", b"1", "image/png")
    storage.put("old/2.png", b"2", "image/png")
    clock.now = START + timedelta(hours=25)
    storage.put("new/1.png", b"3", "image/png")
    cutoff = clock.now - timedelta(hours=24)
    assert storage.delete_older_than(cutoff) == 2
    assert storage.get("new/1.png").data == b"3"
    assert all_files(storage.root) == ["new/1.png", "new/1.png~meta.json"]
    assert storage.delete_older_than(cutoff) == 0


def test_delete_older_than_cutoff_is_exclusive(storage: LocalStorage) -> None:
    storage.put("k", b"x", "text/plain")
    assert storage.delete_older_than(START) == 0
    assert storage.delete_older_than(START + timedelta(microseconds=1)) == 1


def test_retention_reads_the_sidecar_time(storage: LocalStorage) -> None:
    storage.put("a.png", b"a", "image/png")
    storage.put("b.png", b"b", "image/png")
    sidecar = storage.root / "a.png~meta.json"
    meta = json.loads(sidecar.read_text())
    meta["created_at"] = (START - timedelta(days=3)).isoformat()
    sidecar.write_text(json.dumps(meta))
    assert storage.get("a.png").created_at == START - timedelta(days=3)
    assert storage.delete_older_than(START - timedelta(days=1)) == 1
    assert storage.get("b.png").data == b"b"


def test_missing_sidecar_falls_back_to_mtime_and_octet_stream(storage: LocalStorage) -> None:
    storage.put("a.png", b"a", "image/png")
    storage.put("b.png", b"b", "image/png")
    (storage.root / "a.png~meta.json").unlink()
    old = START - timedelta(days=3)
    os.utime(storage.root / "a.png", (old.timestamp(), old.timestamp()))
    stored = storage.get("a.png")
    assert (stored.content_type, stored.created_at) == ("application/octet-stream", old)
    assert storage.delete_older_than(START - timedelta(days=1)) == 1
    assert all_files(storage.root) == ["b.png", "b.png~meta.json"]


def test_retention_removes_stale_crash_leftovers(storage: LocalStorage) -> None:
    storage.put("live.png", b"x", "image/png")
    (storage.root / "jobs").mkdir()
    leftovers = [storage.root / "jobs" / "x.png~tmp.abc123", storage.root / "gone.png~meta.json"]
    old = (START - timedelta(days=3)).timestamp()
    for path in leftovers:
        path.write_bytes(b"half")
        os.utime(path, (old, old))
    assert storage.delete_older_than(START - timedelta(days=1)) == 0  # not objects: not counted
    assert all_files(storage.root) == ["live.png", "live.png~meta.json"]
    assert not (storage.root / "jobs").exists()


def test_delete_older_than_needs_an_aware_cutoff(storage: LocalStorage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        storage.delete_older_than(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "/abs",
        "a//b",
        "a\\b",
        "a/../b",
        "",
        "caf\u00e9.png",
        "\u0661\u0662",  # Arabic-Indic digits: "digits", but not ASCII
        ".",
        "a/./b",
        "a/",
        "a b",
        "a\x00b",
        "C:x",
        "x" * 201,
        "/".join(["x"] * 600),
    ],
)
def test_unsafe_keys_are_refused_everywhere(storage: LocalStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)
    with pytest.raises(InvalidKey):
        storage.put(key, b"x", "text/plain")
    with pytest.raises(InvalidKey):
        storage.get(key)
    with pytest.raises(InvalidKey):
        storage.delete(key)
    assert all_files(storage.root.parent) == []  # nothing written anywhere, even outside root


def test_non_string_key_is_refused(storage: LocalStorage) -> None:
    with pytest.raises(InvalidKey, match="string"):
        storage.put(b"a.png", b"x", "image/png")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["a", "A-Z_0.9", "..a", "a..", "x" * 200, "o/d/e.tar.gz"])
def test_safe_keys_are_accepted(storage: LocalStorage, key: str) -> None:
    storage.put(key, b"ok", "text/plain")
    assert storage.get(key).data == b"ok"
    assert storage.root in (storage.root / key).resolve().parents


@pytest.mark.parametrize("content_type", ["", "png", "image/png\r\nX-Evil: 1", "image/p ng", 7])
def test_bad_content_type_is_refused(storage: LocalStorage, content_type: str) -> None:
    with pytest.raises(ContentTypeError):
        storage.put("a.png", b"x", content_type)
    assert all_files(storage.root) == []


def test_key_cannot_be_both_object_and_folder(storage: LocalStorage) -> None:
    storage.put("a/b.png", b"x", "image/png")
    with pytest.raises(InvalidKey, match="folder"):
        storage.put("a", b"y", "image/png")
    storage.put("f", b"z", "image/png")
    with pytest.raises(InvalidKey, match="object"):
        storage.put("f/g.png", b"y", "image/png")
    assert all_files(storage.root) == ["a/b.png", "a/b.png~meta.json", "f", "f~meta.json"]


def test_storage_errors_share_a_base_class() -> None:
    for error in (InvalidKey, ObjectNotFound, ContentTypeError):
        assert issubclass(error, StorageError)


def test_atomic_write_leaves_no_temp_files(storage: LocalStorage) -> None:
    for i in range(5):
        storage.put(f"jobs/{i % 2}/out.png", os.urandom(10_000), "image/png")
    assert all_files(storage.root) == [
        "jobs/0/out.png",
        "jobs/0/out.png~meta.json",
        "jobs/1/out.png",
        "jobs/1/out.png~meta.json",
    ]


def test_failed_write_keeps_the_old_object_and_cleans_up(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("k.png", b"old", "image/png")

    def crash(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk on fire"):
        storage.put("k.png", b"new", "image/png")
    monkeypatch.undo()
    assert storage.get("k.png").data == b"old"
    assert all_files(storage.root) == ["k.png", "k.png~meta.json"]


def test_concurrent_puts_of_different_keys(storage: LocalStorage) -> None:
    payloads = {f"jobs/{i % 4}/{i}.bin": os.urandom(2_000 + i) for i in range(64)}
    barrier = threading.Barrier(8)

    def put(item: tuple[str, bytes]) -> None:
        key, data = item
        if int(key.rsplit("/", 1)[1].split(".")[0]) < 8:
            barrier.wait()  # make the first eight really start together
        storage.put(key, data, "application/octet-stream")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, payloads.items()))
    for key, data in payloads.items():
        assert storage.get(key).data == data
    assert not [name for name in all_files(storage.root) if "~tmp." in name]
    assert len(all_files(storage.root)) == 2 * len(payloads)


def test_put_survives_cleanup_removing_its_fresh_folder(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retention prunes empty folders; one may vanish between put's mkdir and its first
    # write. Simulate exactly that race once: put must recreate the folder and succeed.
    real_mkstemp = tempfile.mkstemp
    raced: list[str] = []

    def mkstemp_after_cleanup(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if not raced:
            raced.append(kwargs["dir"])
            storage.delete_older_than(START + timedelta(days=1))  # prunes the empty folder
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_after_cleanup)
    storage.put("jobs/7/out.png", b"x", "image/png")
    assert raced  # the race really happened
    assert storage.get("jobs/7/out.png").data == b"x"


def test_delete_older_than_with_a_prefix_keeps_everything_else(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    store = LocalStorage(tmp_path, clock=lambda: now)
    store.put("outputs/job1/0.jpg", b"old output", "image/jpeg")
    store.put("profiles/p1/photo0", b"old profile photo", "image/jpeg")
    later = now + timedelta(days=10)
    assert store.delete_older_than(later, prefix="outputs") == 1
    assert store.get("profiles/p1/photo0").data == b"old profile photo"
    with pytest.raises(ObjectNotFound):
        store.get("outputs/job1/0.jpg")
    # A prefix with no objects under it deletes nothing (and does not fail).
    assert store.delete_older_than(later, prefix="nothing-here") == 0

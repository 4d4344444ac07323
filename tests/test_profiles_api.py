"""Profiles over HTTP: training lifecycle, every ERROR reason, validation, tags, pictures,
deletion, account isolation, restart recovery and billing.

The subject is the astronaut (Eileen Collins) in transformed copies (flips, crops,
brightness); Grace Hopper is the other person. Training runs for real on the service's
training thread, so tests poll the status with a timeout. Most tests lower
``profile_min_photos`` to 2 (fast tier 2-10 photos, standard 4-50) to train on few photos.

Choice documented here and in the OpenAPI text: a photo count that does not fit the tier
is a 422 naming ``image_urls``, with FastAPI's list body like every other invalid field.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from photoremix.imaging import decode_image
from photoremix.services import profiles as profiles_module
from photoremix.services.profiles import UnusableProfile
from photoremix.settings import Settings
from service_support import (
    FlatEngine,
    b64_jpeg,
    gradient_image,
    make_settings,
    new_key,
    service_client,
)

PROFILES = "/v1/phota/profiles"
BALANCE = "/v1/phota/balance"
UNFINISHED = {"VALIDATING", "QUEUING", "IN_PROGRESS"}
TRAINING_TIMEOUT_S = 90.0


# --- photos ------------------------------------------------------------------------------


def subject_photos(face: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` distinct photos of the person in ``face`` (512 x 512): mirrored or not,
    cropped at different offsets (the face stays inside), brightness 0.8-1.2."""
    photos = []
    for index in range(count):
        photo = face[:, ::-1] if index % 2 else face
        top, left = 8 * (index % 4), 12 * (index % 3)
        photo = photo[top : top + 464, left : left + 464].astype(np.float32)
        gain = 0.8 + 0.1 * (index % 5)
        photos.append(np.clip(photo * gain, 0, 255).astype(np.uint8))
    return photos


def sources(photos: list[np.ndarray]) -> list[str]:
    return [b64_jpeg(photo) for photo in photos]


def not_used(message: str, heading: str) -> dict[str, str]:
    """{"image_urls[i] (url)": why} from the part of a status message after ``heading``
    (a reason may hold "; " itself, so split at the labels)."""
    listed = message.split(heading, 1)[1].split(". The reserved credit")[0].rstrip(".")
    parts = re.split(r"(?:^|; )(image_urls\[\d+\](?: \([^)]*\))?): ", listed.strip())
    assert parts[0] == "", message
    return dict(zip(parts[1::2], parts[2::2], strict=True))


# --- service helpers ---------------------------------------------------------------------


@dataclass
class Caller:
    client: TestClient
    key: str
    account_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def add(self, image_urls: list[str], tier: str = "fast", tag: str | None = None) -> Any:
        body: dict[str, Any] = {"image_urls": image_urls, "training_tier": tier}
        if tag is not None:
            body["tag"] = tag
        return self.client.post(f"{PROFILES}/add", json=body, headers=self.headers)

    def added(self, image_urls: list[str], tier: str = "fast", tag: str | None = None) -> str:
        response = self.add(image_urls, tier, tag)
        assert response.status_code == 200, response.text
        return str(response.json()["profile_id"])

    def status(self, profile_id: str) -> Any:
        return self.client.get(f"{PROFILES}/{profile_id}/status", headers=self.headers)

    def picture(self, profile_id: str) -> Any:
        return self.client.get(f"{PROFILES}/{profile_id}/profile_picture", headers=self.headers)

    def delete(self, profile_id: str) -> Any:
        return self.client.delete(f"{PROFILES}/{profile_id}", headers=self.headers)

    def ids(self, tag: str | None = None) -> Any:
        params = {} if tag is None else {"tag": tag}
        return self.client.get(f"{PROFILES}/ids", params=params, headers=self.headers)

    def balance(self) -> tuple[Decimal, list[dict[str, Any]]]:
        response = self.client.get(BALANCE, params={"limit": 500}, headers=self.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return Decimal(body["balance"]), body["ledger"]

    def wait_until_done(self, profile_id: str) -> dict[str, Any]:
        """The status document once the profile left the training statuses."""
        deadline = time.monotonic() + TRAINING_TIMEOUT_S
        while True:
            response = self.status(profile_id)
            assert response.status_code == 200, response.text
            document = response.json()
            if document["status"] not in UNFINISHED:
                return dict(document)
            assert time.monotonic() < deadline, f"still {document['status']} after the timeout"
            time.sleep(0.1)

    def wait_for_status(self, profile_id: str, status: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.status(profile_id).json()["status"] != status:
            assert time.monotonic() < deadline, f"profile never reached {status}"
            time.sleep(0.05)


@contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    with service_client(settings, engine=FlatEngine()) as client:
        yield client


def caller(client: TestClient, settings: Settings, credit: str = "10.00") -> Caller:
    account_id, key = new_key(settings, credit)
    return Caller(client, key, account_id)


def ledger_for(ledger: list[dict[str, Any]], profile_id: str) -> list[tuple[str, Decimal]]:
    """(kind, amount) of the ledger rows about ``profile_id``, oldest first."""
    rows = [row for row in reversed(ledger) if row["reference"] == f"profile:{profile_id}"]
    return [(row["kind"], Decimal(row["amount"])) for row in rows]


def assert_ledger_adds_up(balance: Decimal, ledger: list[dict[str, Any]]) -> None:
    assert sum((Decimal(row["amount"]) for row in ledger), Decimal("0")) == balance
    assert Decimal(ledger[0]["balance_after"]) == balance


def stored_files(settings: Settings, profile_id: str) -> list[str]:
    """Every file under the profile's storage folder (objects and their metadata)."""
    folder = settings.data_dir / "files" / "profiles" / profile_id
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def stored_objects(settings: Settings, profile_id: str) -> list[str]:
    """The storage keys under ``profiles/<id>/`` (LocalStorage's "~" sidecars left out)."""
    return [name for name in stored_files(settings, profile_id) if "~" not in name]


def profile_rows(settings: Settings, profile_id: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.data_dir / "photoremix.db") as connection:
        return connection.execute(
            "SELECT status, model FROM profiles WHERE id = ?", (profile_id,)
        ).fetchall()


@dataclass
class Gate:
    """Holds ``train_profile`` until released, to look at a profile while it trains."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    train_first: bool = False  # train, then hold the result (instead of holding first)
    abandon: bool = False  # when released: fail like a process that died meanwhile


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate()
    real: Callable[..., Any] = profiles_module.train_profile

    def held_train(*args: Any, **kwargs: Any) -> Any:
        model = real(*args, **kwargs) if held.train_first else None
        held.entered.set()
        held.release.wait(TRAINING_TIMEOUT_S)
        if held.abandon:
            raise RuntimeError("abandoned by the test")
        return model if held.train_first else real(*args, **kwargs)

    monkeypatch.setattr(profiles_module, "train_profile", held_train)
    yield held
    held.release.set()


# --- the lifecycle -----------------------------------------------------------------------


def test_fast_profile_trains_to_ready_is_charged_and_has_a_jpeg_picture(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    settings = make_settings(tmp_path)  # the documented 5-photo minimum
    with running(settings) as client:
        ada = caller(client, settings)
        profile_id = ada.added(sources(subject_photos(astronaut, 5)), tier="fast", tag="ada")

        balance, ledger = ada.balance()
        assert balance == Decimal("8.51")  # 1.49 reserved at once
        done = ada.wait_until_done(profile_id)

        assert done["status"] == "READY", done["message"]
        assert done["profile_id"] == profile_id
        assert "5 of 5 photos" in done["message"]
        balance, ledger = ada.balance()
        assert balance == Decimal("8.51")  # charged in full: nothing came back
        assert ledger_for(ledger, profile_id) == [
            ("reserve", Decimal("-1.49")),
            ("settle", Decimal("0.00")),
        ]
        assert_ledger_adds_up(balance, ledger)

        picture = ada.picture(profile_id)
        assert picture.status_code == 200
        assert picture.headers["content-type"] == "image/jpeg"
        assert picture.content[:3] == b"\xff\xd8\xff"
        face = decode_image(picture.content)
        assert min(face.shape[:2]) >= 32

        listed = ada.ids().json()["profiles"]
        assert [(p["profile_id"], p["status"], p["tag"]) for p in listed] == [
            (profile_id, "READY", "ada")
        ]
        assert stored_objects(settings, profile_id) == [
            "photos/0",
            "photos/1",
            "photos/2",
            "photos/3",
            "photos/4",
            "picture.jpg",
        ]
        service = client.app.state.profiles  # type: ignore[attr-defined]
        [(ready_id, model)] = service.ready_models(ada.account_id, [profile_id])
        assert ready_id == profile_id
        assert model.embeddings.shape[1:] == (128,) and len(model.used) >= 1


def test_photos_not_used_are_listed_in_the_ready_message(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=2)
    with running(settings) as client:
        ada = caller(client, settings)
        photos = sources(subject_photos(astronaut, 3))
        photos[1:1] = ["bm90IGFuIGltYWdl", b64_jpeg(gradient_image())]  # "not an image"
        done = ada.wait_until_done(ada.added(photos))

    assert done["status"] == "READY", done["message"]
    assert "3 of 5 photos" in done["message"]
    reasons = not_used(done["message"], "Not used:")
    assert set(reasons) == {"image_urls[1]", "image_urls[2]"}
    assert reasons["image_urls[1]"].startswith("could not be decoded")
    assert "no face" in reasons["image_urls[2]"]


def test_error_names_each_failed_photo_and_why_and_refunds(
    tmp_path: Path, astronaut: np.ndarray, grace_hopper: np.ndarray
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=3)
    grace = cv2.resize(grace_hopper, (256, 300), interpolation=cv2.INTER_AREA)
    photos = [
        *sources(subject_photos(astronaut, 2)),  # the subject: 2 usable photos, 3 needed
        "data:image/jpeg;base64,AAAA",
        "http://127.0.0.1:9/gone.jpg?signature=secret",  # nothing listens on port 9
        b64_jpeg(gradient_image()),
        b64_jpeg(np.hstack([grace, grace[:, ::-1]])),  # two faces, neither the subject
        b64_jpeg(cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)),
        b64_jpeg(cv2.GaussianBlur(astronaut, (0, 0), 3.1)),  # detected, too soft
    ]
    with running(settings) as client:
        ada = caller(client, settings)
        profile_id = ada.added(photos)
        done = ada.wait_until_done(profile_id)

        assert done["status"] == "ERROR"
        assert "2 of 8 photos" in done["message"] and "at least 3" in done["message"]
        assert "refunded" in done["message"]
        assert "secret" not in done["message"]  # a URL's query string is not echoed
        reasons = not_used(done["message"], "Photos not used:")
        assert list(reasons) == [
            "image_urls[2]",
            "image_urls[3] (http://127.0.0.1:9/gone.jpg)",
            "image_urls[4]",
            "image_urls[5]",
            "image_urls[6]",
            "image_urls[7]",
        ]
        whys = list(reasons.values())
        assert whys[0].startswith("could not be decoded")
        assert whys[1].startswith("could not be fetched")
        assert "no face" in whys[2]
        assert "none of its 2 faces is the person" in whys[3]
        assert "too small" in whys[4]
        assert "blurred" in whys[5]

        balance, ledger = ada.balance()
        assert balance == Decimal("10.00")
        assert ledger_for(ledger, profile_id) == [
            ("reserve", Decimal("-1.49")),
            ("refund", Decimal("1.49")),
        ]
        assert_ledger_adds_up(balance, ledger)
        assert stored_files(settings, profile_id) == []  # a failed profile keeps no photos
        picture = ada.picture(profile_id)
        assert picture.status_code == 409
        assert "ERROR" in picture.json()["detail"]


# --- validation and money before any work -------------------------------------------------


@pytest.mark.parametrize(
    ("count", "tier", "tag", "field_name"),
    [
        (5, "standard", None, "image_urls"),  # standard takes 10-50
        (11, "fast", None, "image_urls"),  # fast takes 5-10
        (4, "fast", None, "image_urls"),
        (51, "standard", None, "image_urls"),
        (0, "fast", None, "image_urls"),
        (5, "turbo", None, "training_tier"),
        (5, "fast", "", "tag"),
        (5, "fast", "x" * 129, "tag"),
    ],
)
def test_wrong_count_tier_or_tag_is_422_and_writes_nothing(
    tmp_path: Path, count: int, tier: str, tag: str | None, field_name: str
) -> None:
    settings = make_settings(tmp_path)
    with running(settings) as client:
        ada = caller(client, settings)
        response = ada.add(["data:image/png;base64,AAAA"] * count, tier=tier, tag=tag)

        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "validation_error"
        assert any(problem["loc"][:2] == ["body", field_name] for problem in body["detail"])
        assert ada.ids().json() == {"profiles": []}
        assert ada.balance()[0] == Decimal("10.00")


def test_wrong_count_message_points_to_the_right_tier(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with running(settings) as client:
        response = caller(client, settings).add(["AAAA"] * 7, tier="standard")
    [problem] = response.json()["detail"]
    assert "10 to 50" in problem["msg"] and '"fast" for 5-10' in problem["msg"]


def test_lowered_minimum_accepts_a_single_photo(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, profile_min_photos=1)
    with running(settings) as client:
        ada = caller(client, settings)
        assert ada.add(["AAAA"], tier="standard").status_code == 422  # standard: 2-50
        profile_id = ada.added(["AAAA"], tier="fast")
        assert ada.wait_until_done(profile_id)["status"] == "ERROR"


@pytest.mark.parametrize(("tier", "credit"), [("standard", "2.89"), ("fast", "1.48")])
def test_short_balance_is_402_and_writes_nothing(tmp_path: Path, tier: str, credit: str) -> None:
    settings = make_settings(tmp_path, profile_min_photos=1)
    with running(settings) as client:
        ada = caller(client, settings, credit=credit)
        response = ada.add(["AAAA"] * 2, tier=tier)

        assert response.status_code == 402
        assert response.json()["code"] == "insufficient_credit"
        assert credit in response.json()["detail"]
        assert ada.ids().json() == {"profiles": []}
        balance, ledger = ada.balance()
        assert balance == Decimal(credit)
        assert [row["kind"] for row in ledger] == ["credit"]


# --- listing, isolation, deletion ----------------------------------------------------------


def test_ids_filter_by_tag_and_show_only_the_callers_profiles(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, profile_min_photos=1)
    with running(settings) as client:
        ada, bob = caller(client, settings), caller(client, settings)
        # Undecodable photos: each profile fails at once, which is all listing needs.
        first = ada.added(["AAAA"], tag="team-a")
        second = ada.added(["AAAA"], tag="team-a")
        other = ada.added(["AAAA"], tag="team-b")
        untagged = ada.added(["AAAA"])
        bobs = bob.added(["AAAA"], tag="team-a")

        def listed(who: Caller, tag: str | None = None) -> list[str]:
            response = who.ids(tag)
            assert response.status_code == 200
            return [p["profile_id"] for p in response.json()["profiles"]]

        assert listed(ada, "team-a") == [first, second]
        assert listed(ada, "team-b") == [other]
        assert listed(ada, "nobody") == []
        assert listed(ada) == [first, second, other, untagged]
        assert listed(bob, "team-a") == [bobs]
        entry = ada.ids("team-b").json()["profiles"][0]
        assert set(entry) == {"profile_id", "status", "tag", "created_at"}
        assert entry["tag"] == "team-b"
        assert ada.ids("").status_code == 422


def test_another_accounts_profile_is_404_everywhere(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, profile_min_photos=1)
    with running(settings) as client:
        ada, bob = caller(client, settings), caller(client, settings)
        profile_id = ada.added(["AAAA"])
        ada.wait_until_done(profile_id)

        for response in (bob.status(profile_id), bob.picture(profile_id), bob.delete(profile_id)):
            assert response.status_code == 404
            assert response.json()["code"] == "profile_not_found"
        assert bob.status("no-such-id").status_code == 404
        assert ada.status(profile_id).status_code == 200  # bob's delete did nothing

        service = client.app.state.profiles  # type: ignore[attr-defined]
        with pytest.raises(UnusableProfile) as refused:
            service.ready_models(bob.account_id, [profile_id])
        assert refused.value.status_code == 400 and refused.value.profile_id == profile_id
        with pytest.raises(UnusableProfile) as not_ready:
            service.ready_models(ada.account_id, [profile_id])
        assert "ERROR" in not_ready.value.detail


def test_delete_leaves_nothing_and_later_calls_are_404(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=2)
    with running(settings) as client:
        ada = caller(client, settings)
        profile_id = ada.added(sources(subject_photos(astronaut, 4)), tier="standard")
        assert ada.wait_until_done(profile_id)["status"] == "READY"
        assert "picture.jpg" in stored_objects(settings, profile_id)
        assert profile_rows(settings, profile_id)[0][1] is not None  # the model

        response = ada.delete(profile_id)

        assert response.status_code == 200
        assert response.json() == {"profile_id": profile_id, "status": "ok"}
        assert not (settings.data_dir / "files" / "profiles" / profile_id).exists()
        assert profile_rows(settings, profile_id) == []
        for later in (ada.status(profile_id), ada.picture(profile_id), ada.delete(profile_id)):
            assert later.status_code == 404
        assert ada.ids().json() == {"profiles": []}
        service = client.app.state.profiles  # type: ignore[attr-defined]
        with pytest.raises(UnusableProfile, match="not found"):
            service.ready_models(ada.account_id, [profile_id])
        balance, ledger = ada.balance()
        assert balance == Decimal("7.10")  # 2.90: a trained profile stays paid for
        assert_ledger_adds_up(balance, ledger)


# --- while training ----------------------------------------------------------------------


def test_picture_and_remix_use_are_refused_until_ready(
    tmp_path: Path, astronaut: np.ndarray, gate: Gate
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=2)
    with running(settings) as client:
        ada = caller(client, settings)
        profile_id = ada.added(sources(subject_photos(astronaut, 2)))
        assert gate.entered.wait(30)

        assert ada.status(profile_id).json() == {
            "profile_id": profile_id,
            "status": "IN_PROGRESS",
            "message": None,
        }
        picture = ada.picture(profile_id)
        assert picture.status_code == 409
        assert picture.json()["code"] == "profile_not_ready"
        assert "IN_PROGRESS" in picture.json()["detail"]
        service = client.app.state.profiles  # type: ignore[attr-defined]
        with pytest.raises(UnusableProfile, match="IN_PROGRESS"):
            service.ready_models(ada.account_id, [profile_id])

        gate.release.set()
        assert ada.wait_until_done(profile_id)["status"] == "READY"
        assert ada.picture(profile_id).status_code == 200
        assert [pid for pid, _ in service.ready_models(ada.account_id, [profile_id])] == [
            profile_id
        ]


def test_delete_while_training_refunds_and_leaves_nothing(
    tmp_path: Path, astronaut: np.ndarray, gate: Gate
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=2)
    with running(settings) as client:
        ada = caller(client, settings)
        gate.train_first = True  # the model exists, its picture is about to be stored
        profile_id = ada.added(sources(subject_photos(astronaut, 2)))
        assert gate.entered.wait(TRAINING_TIMEOUT_S)

        assert ada.delete(profile_id).status_code == 200
        gate.release.set()  # training finishes after the delete: its result is dropped
        service = client.app.state.profiles  # type: ignore[attr-defined]
        assert service.wait_idle(TRAINING_TIMEOUT_S)

        assert stored_files(settings, profile_id) == []
        assert profile_rows(settings, profile_id) == []
        balance, ledger = ada.balance()
        assert balance == Decimal("10.00")
        assert ledger_for(ledger, profile_id) == [
            ("reserve", Decimal("-1.49")),
            ("refund", Decimal("1.49")),
        ]


def test_adding_beyond_the_training_queue_is_503_with_retry_after(
    tmp_path: Path, gate: Gate
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=1)
    with running(settings) as client:
        ada = caller(client, settings, credit="30.00")
        first = ada.added(["AAAA"])
        assert gate.entered.wait(30)  # the training thread is busy with the first one
        for _ in range(profiles_module.MAX_WAITING_PROFILES - 1):
            ada.added(["AAAA"])

        refused = ada.add(["AAAA"])

        assert refused.status_code == 503
        assert refused.headers["Retry-After"].isdigit()
        assert len(ada.ids().json()["profiles"]) == profiles_module.MAX_WAITING_PROFILES
        assert ada.balance()[0] == Decimal("30.00") - 16 * Decimal("1.49")
        gate.release.set()
        assert ada.wait_until_done(first)["status"] == "ERROR"
        service = client.app.state.profiles  # type: ignore[attr-defined]
        assert service.wait_idle(TRAINING_TIMEOUT_S)
        assert ada.wait_until_done(ada.added(["AAAA"]))["status"] == "ERROR"  # room again
        assert ada.balance()[0] == Decimal("30.00")  # every failed profile was refunded


# --- restarts ----------------------------------------------------------------------------


def test_restart_retrains_an_interrupted_profile_from_its_stored_photos(
    tmp_path: Path, astronaut: np.ndarray, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=2)
    with running(settings) as client:
        ada = caller(client, settings)
        profile_id = ada.added(sources(subject_photos(astronaut, 2)))
        assert gate.entered.wait(30)
    # The first process "died" in training; its thread never finishes the profile.
    gate.abandon = True
    monkeypatch.undo()  # the next process trains for real

    with running(settings) as client:
        ada.client = client
        done = ada.wait_until_done(profile_id)
        gate.release.set()

        assert done["status"] == "READY", done["message"]
        balance, ledger = ada.balance()
        assert balance == Decimal("8.51")
        assert ledger_for(ledger, profile_id) == [
            ("reserve", Decimal("-1.49")),
            ("settle", Decimal("0.00")),
        ]


def test_restart_fails_and_refunds_a_profile_caught_validating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, profile_min_photos=1)
    stuck = threading.Event()
    monkeypatch.setattr(profiles_module.ProfileService, "_validate", lambda *args: stuck.wait(30))
    with running(settings) as client:
        ada = caller(client, settings)
        profile_id = ada.added(["AAAA"])
    monkeypatch.undo()

    with running(settings) as client:
        ada.client = client
        done = ada.status(profile_id).json()
        stuck.set()

        assert done["status"] == "ERROR"
        assert "restarted" in done["message"] and "refunded" in done["message"]
        balance, ledger = ada.balance()
        assert balance == Decimal("10.00")
        assert_ledger_adds_up(balance, ledger)

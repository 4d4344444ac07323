"""Identity in remix (issue 6, items 3 and 4): recognition of profiles in the input, the
per-output check, ``known_subjects.counts``, billing per recognised output, ``[[id]]``
mentions, refused profiles and the re-render path.

Two different people, both public domain: scikit-image's astronaut (Eileen Collins) and
matplotlib's Grace Hopper. One service with the real classic engine runs for the whole
module; it trains one fast-tier profile per person, from transformed copies of their photo
(never the photo remixed), with ``profile_min_photos=2``. Remixes use a fixed seed, so
every distance measured here is reproducible.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from skimage import data

from photoremix.engines import RemixOutput, RemixRequest, get_engine
from photoremix.engines.base import ProgressCallback
from photoremix.imaging import decode_image, output_size_2k
from photoremix.services import identity
from photoremix.services import profiles as profiles_module
from photoremix.settings import Settings
from photoremix.vision.faces import SAME_PERSON_DISTANCE
from photoremix.vision.identity import ProfileModel, observe_faces
from service_support import REMIX, b64_jpeg, gradient_image, make_settings, new_key, service_client

PROFILES = "/v1/phota/profiles"
BALANCE = "/v1/phota/balance"
TRAINING_TIMEOUT_S = 90.0
SEED = 1234
PLAIN = Decimal("0.12")  # per output, the default prices
RECOGNISED = Decimal("0.15")
DEFAULT_MAX_DISTANCE: float = Settings.model_fields["identity_max_distance"].default


# --- images ------------------------------------------------------------------------------


def same_height(image: np.ndarray, height: int) -> np.ndarray:
    width = round(image.shape[1] * height / image.shape[0])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def training_photos(face: np.ndarray) -> list[np.ndarray]:
    """Three photos of the person in ``face``, none of them ``face`` itself: mirrored;
    cropped 5 % each side and darker; rotated 5 degrees and brighter."""
    height, width = face.shape[:2]
    cropped = face[height // 20 : height - height // 20, width // 20 : width - width // 20]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 5, 1.0)
    rotated = cv2.warpAffine(face, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    return [
        np.ascontiguousarray(face[:, ::-1]),
        np.clip(cropped * 0.85, 0, 255).astype(np.uint8),
        np.clip(rotated * 1.15, 0, 255).astype(np.uint8),
    ]


def face_replaced(
    image: np.ndarray, box: tuple[int, int, int, int], donor: np.ndarray
) -> np.ndarray:
    """``image`` with ``box`` (and 40 % around it) covered by the face of ``donor``."""

    def widened(b: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, ...]:
        left, top, right, bottom = b
        dx, dy = 0.4 * (right - left), 0.4 * (bottom - top)
        return (
            max(0, int(left - dx)),
            max(0, int(top - dy)),
            min(shape[1], int(right + dx)),
            min(shape[0], int(bottom + dy)),
        )

    [donor_face] = observe_faces(donor)
    dl, dt, dr, db = widened(donor_face.face.box, donor.shape)
    left, top, right, bottom = widened(box, image.shape)
    patch = cv2.resize(
        donor[dt:db, dl:dr], (right - left, bottom - top), interpolation=cv2.INTER_AREA
    )
    replaced = image.copy()
    replaced[top:bottom, left:right] = patch
    return replaced


@pytest.fixture(scope="module")
def composite(astronaut: np.ndarray, grace_hopper: np.ndarray) -> np.ndarray:
    """Two people side by side, both 512 px high: the astronaut left, Grace Hopper right."""
    return np.hstack([astronaut, same_height(grace_hopper, astronaut.shape[0])])


@pytest.fixture(scope="module")
def reference_b64() -> str:
    return b64_jpeg(data.coffee())  # a warm brown palette: the look really changes


# --- the service -------------------------------------------------------------------------


@dataclass
class RecordingEngine:
    """The classic engine, remembering every request it was given (what the engine saw:
    the prompt, the variation offset, the identity protection) and, with
    ``keep_outputs``, what it returned for each (4 MP images: only for a few calls)."""

    name: str = "classic"
    keep_outputs: bool = False
    requests: list[RemixRequest] = field(default_factory=list)
    outputs: list[list[RemixOutput]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.inner = get_engine("classic")

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        self.requests.append(request)
        outputs = self.inner.remix(request, progress)
        if self.keep_outputs:
            self.outputs.append(outputs)
        return outputs


@dataclass
class Caller:
    client: TestClient
    key: str
    account_id: str
    reference_b64: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def remix(self, photo: np.ndarray, **fields: Any) -> Response:
        body = {
            "input_image": b64_jpeg(photo),
            "reference_image": self.reference_b64,
            "seed": SEED,
            **fields,
        }
        return self.client.post(REMIX, json=body, headers=self.headers)

    def balance(self) -> tuple[Decimal, list[dict[str, Any]]]:
        response = self.client.get(BALANCE, params={"limit": 500}, headers=self.headers)
        assert response.status_code == 200, response.text
        return Decimal(response.json()["balance"]), response.json()["ledger"]

    def add_profile(self, sources: list[str]) -> str:
        body = {"image_urls": sources, "training_tier": "fast"}
        response = self.client.post(f"{PROFILES}/add", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        return str(response.json()["profile_id"])

    def profile_status(self, profile_id: str) -> str:
        response = self.client.get(f"{PROFILES}/{profile_id}/status", headers=self.headers)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    def wait_for(self, profile_id: str, done: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + TRAINING_TIMEOUT_S
        while not done(status := self.profile_status(profile_id)):
            assert time.monotonic() < deadline, f"profile {profile_id} still {status}"
            time.sleep(0.05)
        return status

    def trained(self, photos: list[np.ndarray]) -> str:
        profile_id = self.add_profile([b64_jpeg(photo) for photo in photos])
        status = self.wait_for(profile_id, lambda s: s in ("READY", "ERROR"))
        assert status == "READY"
        return profile_id


@dataclass
class Service:
    client: TestClient
    settings: Settings
    engine: RecordingEngine
    ada: Caller
    astronaut_id: str
    hopper_id: str

    def caller(self) -> Caller:
        account_id, key = new_key(self.settings)
        return Caller(self.client, key, account_id, self.ada.reference_b64)

    def models(self) -> list[tuple[str, ProfileModel]]:
        profiles = self.client.app.state.profiles  # type: ignore[attr-defined]
        ids = [self.astronaut_id, self.hopper_id]
        return list(profiles.ready_models(self.ada.account_id, ids))


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    astronaut: np.ndarray,
    grace_hopper: np.ndarray,
    reference_b64: str,
) -> Iterator[Service]:
    settings = make_settings(tmp_path_factory.mktemp("identity"), profile_min_photos=2)
    engine = RecordingEngine()
    with service_client(settings, engine=engine) as client:
        account_id, key = new_key(settings, credit="20.00")
        ada = Caller(client, key, account_id, reference_b64)
        astronaut_id = ada.trained(training_photos(astronaut))
        hopper_id = ada.trained(training_photos(grace_hopper))
        yield Service(client, settings, engine, ada, astronaut_id, hopper_id)


@dataclass
class Billed:
    """A successful remix, what it cost, and the ledger rows it wrote (oldest first)."""

    body: dict[str, Any]
    charge: Decimal
    rows: list[dict[str, Any]]


def remix_billed(caller: Caller, photo: np.ndarray, **fields: Any) -> Billed:
    balance_before, ledger_before = caller.balance()
    response = caller.remix(photo, **fields)
    assert response.status_code == 200, response.text
    balance_after, ledger_after = caller.balance()
    seen = {row["id"] for row in ledger_before}
    rows = [row for row in reversed(ledger_after) if row["id"] not in seen]
    # The ledger explains the balance: every row adds up to it, and this job's rows
    # (one reference) to what the balance moved by.
    assert sum(Decimal(row["amount"]) for row in ledger_after) == balance_after
    assert len({row["reference"] for row in rows}) == 1
    assert rows[0]["reference"].startswith("job:")
    charge = balance_before - balance_after
    assert -sum(Decimal(row["amount"]) for row in rows) == charge
    return Billed(response.json(), charge, rows)


def assert_billed(billed: Billed, outputs: int, recognised: int) -> None:
    expected = recognised * RECOGNISED + (outputs - recognised) * PLAIN
    assert billed.charge == expected
    kinds = [(row["kind"], Decimal(row["amount"])) for row in billed.rows]
    assert kinds[:2] == [("reserve", -outputs * RECOGNISED), ("settle", Decimal("0.00"))]
    refund = outputs * RECOGNISED - expected
    assert kinds[2:] == ([("refund", refund)] if refund else [])
    assert f"charged {expected}" in billed.rows[1]["note"]


def faces_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's per-face checks, left to right in the output."""
    return sorted(report["metrics"]["faces"], key=lambda face: face["box"][0])


def error_of(response: Response) -> tuple[str, str]:
    body = response.json()
    assert set(body) == {"detail", "code", "request_id"}
    return body["code"], body["detail"]


# --- services.identity: recognition, prompts, the output check -----------------------------


@pytest.fixture(scope="module")
def composite_identity(service: Service, composite: np.ndarray) -> identity.InputIdentity:
    return identity.recognise_input(composite, service.models())


def test_recognise_input_matches_each_side_to_its_profile(
    service: Service, composite_identity: identity.InputIdentity
) -> None:
    by_side = sorted(
        range(len(composite_identity.faces)),
        key=lambda i: composite_identity.faces[i].face.box[0],
    )
    assert len(by_side) == 2
    assigned = [composite_identity.assigned.get(i) for i in by_side]
    assert assigned == [service.astronaut_id, service.hopper_id]


def test_engine_prompt_names_people_by_side_on_a_two_person_photo(
    service: Service, composite_identity: identity.InputIdentity
) -> None:
    prompt = f"Give [[{service.astronaut_id}]] warm light and [[ {service.hopper_id} ]] cool"

    assert identity.engine_prompt(prompt, composite_identity) == (
        "Give the person on the left warm light and the person on the right cool"
    )
    # An id no face was matched to still leaves no id behind.
    assert identity.engine_prompt("[[someone-else]] in film", composite_identity) == (
        "the person in film"
    )
    assert identity.engine_prompt("warmer, more contrast", composite_identity) == (
        "warmer, more contrast"
    )
    assert identity.engine_prompt(None, composite_identity) is None


def test_engine_prompt_says_the_person_for_a_single_face(
    service: Service, astronaut: np.ndarray
) -> None:
    who = identity.recognise_input(astronaut, service.models())

    assert who.assigned == {0: service.astronaut_id}
    assert identity.engine_prompt(f"[[{service.astronaut_id}]] at dusk", who) == (
        "the person at dusk"
    )


def test_check_output_is_near_zero_for_an_unchanged_output_and_far_for_another_face(
    service: Service,
    composite: np.ndarray,
    grace_hopper: np.ndarray,
    composite_identity: identity.InputIdentity,
) -> None:
    models = service.models()
    left = min(range(2), key=lambda i: composite_identity.faces[i].face.box[0])
    right = 1 - left

    same = identity.check_output(composite, composite_identity, composite.shape, models)
    width, height = output_size_2k(composite.shape[1], composite.shape[0])
    enlarged = cv2.resize(composite, (width, height), interpolation=cv2.INTER_CUBIC)
    resized = identity.check_output(enlarged, composite_identity, composite.shape, models)
    left_box = composite_identity.faces[left].face.box
    swapped = identity.check_output(
        face_replaced(composite, left_box, grace_hopper),
        composite_identity,
        composite.shape,
        models,
    )

    assert [c.face_index for c in same] == [0, 1]
    assert all(c.distance < 0.01 and c.recognised for c in same)
    # Resizing moves the embedding a little, never as far as the re-render threshold.
    assert all(c.distance < DEFAULT_MAX_DISTANCE and c.recognised for c in resized)
    scale_x, scale_y = width / composite.shape[1], height / composite.shape[0]
    for check, observation in zip(resized, composite_identity.faces, strict=True):
        expected_box = np.array(observation.face.box) * [scale_x, scale_y, scale_x, scale_y]
        assert np.abs(np.array(check.box) - expected_box).max() <= 1
    # The astronaut's face covered by Grace Hopper's: a different person, no longer her.
    assert swapped[left].distance > SAME_PERSON_DISTANCE
    assert swapped[left].profile_id == service.astronaut_id and not swapped[left].recognised
    assert swapped[right].distance < 0.01 and swapped[right].recognised


# --- through POST /v1/phota/remix ----------------------------------------------------------


def test_a_profiled_person_is_counted_in_every_output_and_billed_as_recognised(
    service: Service, astronaut: np.ndarray
) -> None:
    billed = remix_billed(
        service.ada, astronaut, profile_ids=[service.astronaut_id], num_output_images=2
    )

    assert billed.body["known_subjects"] == {"counts": {service.astronaut_id: 2}}
    assert len(billed.body["images"]) == 2
    for report in billed.body["reports"]:
        [face] = faces_of(report)
        assert face["profile_id"] == service.astronaut_id and face["recognised"] is True
    assert_billed(billed, outputs=2, recognised=2)


def test_someone_else_is_not_counted_and_billed_plain(
    service: Service, grace_hopper: np.ndarray
) -> None:
    billed = remix_billed(
        service.ada, grace_hopper, profile_ids=[service.astronaut_id], num_output_images=2
    )

    assert billed.body["known_subjects"] == {"counts": {}}
    for report in billed.body["reports"]:
        [face] = faces_of(report)
        assert face["profile_id"] is None and face["recognised"] is False
    assert_billed(billed, outputs=2, recognised=0)


def test_two_people_are_both_counted_without_swapping(
    service: Service, composite: np.ndarray
) -> None:
    # Grace Hopper's id first: matching must follow the faces, not the order of ids.
    ids = [service.hopper_id, service.astronaut_id]
    billed = remix_billed(service.ada, composite, profile_ids=ids)

    assert billed.body["known_subjects"] == {
        "counts": {service.astronaut_id: 1, service.hopper_id: 1}
    }
    [report] = billed.body["reports"]
    left, right = faces_of(report)
    width = decode_image(base64.b64decode(billed.body["images"][0])).shape[1]
    assert left["box"][2] <= width / 2 <= right["box"][0]
    assert (left["profile_id"], right["profile_id"]) == (service.astronaut_id, service.hopper_id)
    assert left["recognised"] is True and right["recognised"] is True
    assert_billed(billed, outputs=1, recognised=1)  # one output, however many people


def test_a_prompt_mention_works_like_profile_ids_and_never_reaches_the_engine(
    service: Service, astronaut: np.ndarray
) -> None:
    seen_before = len(service.engine.requests)
    billed = remix_billed(
        service.ada, astronaut, prompt=f"[[{service.astronaut_id}]] in warm evening light"
    )

    assert billed.body["known_subjects"] == {"counts": {service.astronaut_id: 1}}
    assert_billed(billed, outputs=1, recognised=1)
    prompts = [request.prompt for request in service.engine.requests[seen_before:]]
    assert prompts and all(p == "the person in warm evening light" for p in prompts)
    [report] = billed.body["reports"]
    assert service.astronaut_id not in json.dumps(report["unhandled_instructions"])


def test_the_same_id_in_profile_ids_and_prompt_counts_once_per_output(
    service: Service, astronaut: np.ndarray
) -> None:
    billed = remix_billed(
        service.ada,
        astronaut,
        profile_ids=[service.astronaut_id],
        prompt=f"make [[{service.astronaut_id}]] glow",
        num_output_images=2,
    )

    assert billed.body["known_subjects"] == {"counts": {service.astronaut_id: 2}}
    assert_billed(billed, outputs=2, recognised=2)


def test_a_plain_remix_keeps_the_face_in_one_attempt_and_reports_it(
    service: Service, astronaut: np.ndarray
) -> None:
    billed = remix_billed(service.ada, astronaut)

    assert billed.body["known_subjects"] == {"counts": {}}
    [report] = billed.body["reports"]
    assert report["metrics"]["identity_attempts"] == 1
    assert report["metrics"]["identity_max_distance"] == DEFAULT_MAX_DISTANCE
    [face] = faces_of(report)
    assert 0 < face["distance"] < DEFAULT_MAX_DISTANCE
    assert face["profile_id"] is None and face["recognised"] is False
    assert_billed(billed, outputs=1, recognised=0)


def assert_refused_without_charge(
    caller: Caller, photo: np.ndarray, code: str, named: str, **fields: Any
) -> str:
    """The remix is a 400 with ``code`` naming ``named``; the ledger does not move.
    Returns the detail."""
    balance, ledger = caller.balance()
    response = caller.remix(photo, **fields)
    assert response.status_code == 400, response.text
    got_code, detail = error_of(response)
    assert got_code == code
    assert repr(named) in detail
    assert caller.balance() == (balance, ledger)
    return detail


def test_a_profile_in_error_is_refused_naming_it(service: Service, astronaut: np.ndarray) -> None:
    ada = service.ada
    failed_id = ada.add_profile(["bm90IGFuIGltYWdl", "bm90IGFuIGltYWdl"])  # "not an image"
    assert ada.wait_for(failed_id, lambda s: s in ("READY", "ERROR")) == "ERROR"

    detail = assert_refused_without_charge(
        ada,
        astronaut,
        "profile_not_ready",
        failed_id,
        profile_ids=[service.astronaut_id, failed_id],
    )
    assert "ERROR" in detail


def test_a_profile_still_training_is_refused_naming_it(
    service: Service, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real_train = profiles_module.train_profile

    def held_train(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(TRAINING_TIMEOUT_S)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(profiles_module, "train_profile", held_train)
    ada = service.ada
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    training_id = ada.add_profile([b64_jpeg(small), b64_jpeg(gradient_image())])
    try:
        assert entered.wait(TRAINING_TIMEOUT_S)
        assert ada.profile_status(training_id) == "IN_PROGRESS"

        detail = assert_refused_without_charge(
            ada, astronaut, "profile_not_ready", training_id, prompt=f"[[{training_id}]] warmer"
        )
        assert "IN_PROGRESS" in detail
    finally:
        release.set()
        ada.wait_for(training_id, lambda s: s in ("READY", "ERROR"))


def test_another_accounts_profile_is_refused_as_not_found(
    service: Service, astronaut: np.ndarray
) -> None:
    bob = service.caller()
    for fields in (
        {"profile_ids": [service.astronaut_id]},
        {"prompt": f"[[{service.astronaut_id}]] warmer"},
    ):
        detail = assert_refused_without_charge(
            bob, astronaut, "profile_not_found", service.astronaut_id, **fields
        )
        assert "not found" in detail
    assert_refused_without_charge(
        bob, astronaut, "profile_not_found", "no-such-profile", profile_ids=["no-such-profile"]
    )
    _, ledger = bob.balance()
    assert [row["kind"] for row in ledger] == ["credit"]


# --- the re-render path ------------------------------------------------------------------


def test_a_too_strict_threshold_re_renders_and_still_reports_every_distance(
    tmp_path: Path, astronaut: np.ndarray, reference_b64: str
) -> None:
    settings = make_settings(tmp_path, identity_max_distance=1e-6, identity_rerender_attempts=2)
    engine = RecordingEngine(keep_outputs=True)
    with service_client(settings, engine=engine) as client:
        account_id, key = new_key(settings)
        billed = remix_billed(
            Caller(client, key, account_id, reference_b64), astronaut, num_output_images=2
        )

    # Delivered and billed even though no attempt got within the threshold.
    assert len(billed.body["images"]) == 2
    expected_size = output_size_2k(astronaut.shape[1], astronaut.shape[0])
    for image in billed.body["images"]:
        assert decode_image(base64.b64decode(image)).shape[1::-1] == expected_size
    assert_billed(billed, outputs=2, recognised=0)
    for variation, report in enumerate(billed.body["reports"]):
        assert report["variation"] == variation
        assert report["metrics"]["identity_attempts"] == 3
        assert report["metrics"]["identity_max_distance"] == 1e-6
        [face] = faces_of(report)
        assert face["distance"] > 1e-6  # over the threshold, and reported
    # One render of both, then two re-renders of each variation alone, protecting harder.
    calls = [(r.num_outputs, r.variation_offset, r.identity_protection) for r in engine.requests]
    assert calls == [(2, 0, 0.0), (1, 0, 0.5), (1, 0, 1.0), (1, 1, 0.5), (1, 1, 1.0)]

    # The attempt kept is the closest one: measure every attempt as the service does.
    content = engine.requests[0].content  # the decoded input the service rendered
    who = identity.recognise_input(content, [])
    first, *retries = engine.outputs
    for variation, report in enumerate(billed.body["reports"]):
        attempts = [first[variation], *(r[0] for r in retries[2 * variation : 2 * variation + 2])]
        distances = {
            attempt.report.applied["identity_protection"]: identity.worst_distance(
                identity.check_output(attempt.image, who, content.shape, [])
            )
            for attempt in attempts
        }
        assert sorted(distances) == [0.0, 0.5, 1.0]
        kept = report["applied"]["identity_protection"]
        assert distances[kept] == min(distances.values())
        [face] = faces_of(report)
        assert face["distance"] == pytest.approx(distances[kept], abs=1e-4)

"""Profiles: trained identities, from reference photos to a model remix can recognise.

A profile moves ``VALIDATING -> QUEUING -> IN_PROGRESS -> READY | ERROR``:

1. ``add_profile`` checks the photo count against the tier and the tag, reserves the
   tier's price (402, nothing written, when short), creates the row and returns its id
   at once. Everything after runs on this service's own single training thread.
2. VALIDATING: each source (an http(s) URL fetched under the SSRF policy, or raw base64 /
   a data URI) is decoded and kept as JPEG in storage under ``profiles/<id>/photos/<n>``
   (``n`` = its position in the request). A source that cannot be fetched or decoded is
   noted on the row, named by its position; the others go on.
3. QUEUING: waiting for the training thread (the photos are in storage, not in memory).
4. IN_PROGRESS: ``vision.identity.train_profile`` finds the subject common to most photos.
5. READY: the model is kept on the row, the picture in ``profiles/<id>/picture.jpg``, the
   reservation is charged in full; the message lists the photos not used and why.
   ERROR: the reservation is refunded, the stored photos are deleted, and the message names
   each photo that failed and why.

Every move is a conditional UPDATE on the current status, so a profile deleted while it
trains (its row removed) makes the training thread's next move fail; the thread then
removes whatever it stored meanwhile. The money is reserved, then charged or refunded,
exactly once (see ``services.billing``).

Like ``services.remix``, this module knows nothing of HTTP: failures are ``ServiceError``
subclasses carrying the HTTP status.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from photoremix.imaging import ImageError, decode_image, decode_image_text, encode_image
from photoremix.net.fetch import FetchError, FetchPolicy, fetch_url
from photoremix.persistence.models import Account, Profile, utcnow
from photoremix.persistence.transitions import transition
from photoremix.services import billing
from photoremix.services.remix import (
    Busy,
    Conflict,
    InvalidRequest,
    NotFound,
    PaymentRequired,
    ServiceError,
)
from photoremix.settings import Settings
from photoremix.storage import ObjectNotFound, Storage
from photoremix.vision.identity import (
    PhotoRejection,
    ProfileModel,
    ProfileTrainingError,
    train_profile,
)

log = logging.getLogger(__name__)

TrainingTier = Literal["standard", "fast"]

MAX_PHOTOS: Final = 50  # any tier
FAST_MAX_PHOTOS: Final = 10
MAX_TAG_LENGTH: Final = 128
# Profiles added but not yet trained; beyond this, adding answers 503. Each waiting
# profile holds its request's image sources (up to the body limit) until it is validated.
MAX_WAITING_PROFILES: Final = 16
UNFINISHED: Final = ("VALIDATING", "QUEUING", "IN_PROGRESS")

_URL_SCHEME: Final = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_LABEL_URL_CHARS: Final = 100


# --- errors ----------------------------------------------------------------------------


class ProfileFieldError(ServiceError):
    """A field of ``add_profile`` is out of range; the API answers 422 naming ``field``."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


class ProfileNotFound(NotFound):
    """No profile with this id belongs to the caller (another account's is "not found")."""

    code = "profile_not_found"


class ProfileNotReady(Conflict):
    """The profile exists but has no picture yet (or failed): 409."""

    code = "profile_not_ready"


class UnusableProfile(InvalidRequest):
    """A remix named a profile that is unknown, another account's, or not READY: 400.

    profile_id: the first such id in the order given.
    """

    def __init__(self, profile_id: str, detail: str, *, code: str) -> None:
        super().__init__(detail, code=code)
        self.profile_id = profile_id


# --- what goes out ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileInfo:
    """A profile as its owner sees it (no photos, no model)."""

    profile_id: str
    status: str
    message: str | None
    tag: str | None
    training_tier: str
    photo_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, profile: Profile) -> ProfileInfo:
        return cls(
            profile_id=profile.id,
            status=profile.status,
            message=profile.message,
            tag=profile.tag,
            training_tier=profile.training_tier,
            photo_count=profile.photo_count,
            created_at=profile.created_at,
            updated_at=profile.updated_at,
        )


# --- the service -----------------------------------------------------------------------


class ProfileService:
    """Adds, trains, lists and deletes the profiles of accounts.

    sessions: database sessions (one transaction per step, committed here).
    storage: where the photos and pictures are kept, under ``profiles/<id>/``.
    fetch_policy: limits and the SSRF guard for photo URLs (the remix service's policy).
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        storage: Storage,
        fetch_policy: FetchPolicy,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.fetch_policy = fetch_policy
        self.prices: dict[str, Decimal] = {
            "standard": settings.price_profile_standard,
            "fast": settings.price_profile_fast,
        }
        # One thread: training is CPU-bound and the remix workers need the cores too.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-training")
        self._waiting = 0  # tasks queued or running on the training thread
        self._waiting_changed = threading.Condition()

    # ---- adding ---------------------------------------------------------------------------

    def photo_limits(self, tier: TrainingTier) -> tuple[int, int]:
        """(fewest, most) photos ``tier`` accepts; 10-50 and 5-10 with the default setting."""
        least = self.settings.profile_min_photos
        return (2 * least, MAX_PHOTOS) if tier == "standard" else (least, FAST_MAX_PHOTOS)

    def add_profile(
        self,
        account: Account,
        image_sources: Sequence[str],
        tier: TrainingTier = "standard",
        tag: str | None = None,
    ) -> str:
        """Create a profile and start training it in the background; returns its id.

        image_sources: http(s) URLs, raw base64 or data URIs, one per photo.
        Raises ProfileFieldError (422), PaymentRequired (402, nothing written) or
        Busy (503, too many profiles waiting to be trained).
        """
        self._check_request(image_sources, tier, tag)
        with self._waiting_changed:
            if self._waiting >= MAX_WAITING_PROFILES:
                raise Busy(
                    f"{self._waiting} profiles are waiting to be trained. "
                    f"Retry after {Busy.retry_after_s} seconds."
                )
        price = self.prices[tier]
        try:
            with self.sessions.begin() as session:
                profile = Profile(
                    account_id=account.id,
                    tag=tag,
                    training_tier=tier,
                    status="VALIDATING",
                    photo_count=len(image_sources),
                    photos=[
                        {"label": _label(index, source), "problem": None}
                        for index, source in enumerate(image_sources)
                    ],
                )
                session.add(profile)
                session.flush()  # the id is the ledger reference
                reservation = billing.reserve(
                    session, account.id, price, reference=f"profile:{profile.id}"
                )
                profile.reservation_id = reservation.ledger_entry_id
                profile_id = profile.id
        except billing.InsufficientBalance as error:
            raise PaymentRequired(
                f"Insufficient prepaid credit balance: training a {tier} profile costs "
                f"{price}, {error.balance} available."
            ) from None
        log.info("profile added", extra={"profile_id": profile_id, "photos": len(image_sources)})
        sources: list[str | None] = list(image_sources)
        if not self._submit(self._validate, profile_id, sources):
            self._fail(
                profile_id,
                "The service was stopping when this profile was added; the reserved credit "
                "was refunded. Add the profile again.",
            )
            raise Busy("The service is stopping. Retry in a moment.")
        return profile_id

    # ---- reading --------------------------------------------------------------------------

    def list_ids(self, account: Account, tag: str | None = None) -> list[ProfileInfo]:
        """The account's profiles, oldest first; only those with ``tag`` when given."""
        query = select(Profile).where(Profile.account_id == account.id)
        if tag is not None:
            query = query.where(Profile.tag == tag)
        with self.sessions() as session:
            rows = session.scalars(query.order_by(Profile.created_at, Profile.id)).all()
            return [ProfileInfo.of(profile) for profile in rows]

    def status(self, account: Account, profile_id: str) -> ProfileInfo:
        """The profile's status and message; ProfileNotFound (404) if not the caller's."""
        with self.sessions() as session:
            return ProfileInfo.of(_owned(session, account.id, profile_id))

    def picture(self, account: Account, profile_id: str) -> bytes:
        """The READY profile's picture (JPEG bytes); ProfileNotReady (409) before READY."""
        return self.picture_of(account.id, profile_id)

    def picture_of(self, account_id: str, profile_id: str) -> bytes:
        """``picture`` by account id (for the remix worker, which has no Account row)."""
        with self.sessions() as session:
            profile = _owned(session, account_id, profile_id)
            status, message = profile.status, profile.message
        if status != "READY":
            explanation = {
                "ERROR": f"its training failed: {message}",
                "INACTIVE": "it is inactive",
            }.get(status, "it is still being trained; poll its status until READY")
            raise ProfileNotReady(
                f"Profile {profile_id!r} has no picture because {explanation} (status {status})."
            )
        try:
            return self.storage.get(_picture_key(profile_id)).data
        except ObjectNotFound:
            raise ProfileNotFound(
                f"The picture of profile {profile_id!r} is no longer stored."
            ) from None

    def ready_models(
        self, account_id: str, profile_ids: Sequence[str]
    ) -> list[tuple[str, ProfileModel]]:
        """The models of ``profile_ids``, in that order, for recognition in a remix.

        Raises UnusableProfile (400) naming the first id that is unknown, another
        account's, deleted, or not READY (with its status).
        """
        models: list[tuple[str, ProfileModel]] = []
        with self.sessions() as session:
            for profile_id in profile_ids:
                profile = session.get(Profile, profile_id)
                if profile is None or profile.account_id != account_id:
                    raise UnusableProfile(
                        profile_id,
                        f"Profile {profile_id!r} was not found for this account. "
                        "Check the id with GET /v1/phota/profiles/ids.",
                        code="profile_not_found",
                    )
                if profile.status != "READY" or profile.model is None:
                    raise UnusableProfile(
                        profile_id,
                        f"Profile {profile_id!r} is {profile.status}, not READY: "
                        + (
                            "its training failed; add it again."
                            if profile.status == "ERROR"
                            else "wait until its status is READY."
                        ),
                        code="profile_not_ready",
                    )
                models.append((profile_id, ProfileModel.from_dict(profile.model)))
        return models

    # ---- deleting -------------------------------------------------------------------------

    def delete(self, account: Account, profile_id: str) -> None:
        """Remove the profile: its row (with the model), photos and picture.

        A profile deleted while training gets its reservation refunded; a READY one was
        paid for and is not. Later status, picture and remix calls with the id see a
        missing profile.
        """
        with self.sessions.begin() as session:
            profile = _owned(session, account.id, profile_id)
            if profile.status in UNFINISHED:
                billing.refund(
                    session,
                    _reservation(session, profile),
                    note=f"profile {profile_id} deleted before it was trained",
                )
            session.delete(profile)
        self.storage.delete_prefix(_prefix(profile_id))
        log.info("profile deleted", extra={"profile_id": profile_id})

    # ---- start-up and shutdown ------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Retrain or fail (with a refund) every profile the last process left unfinished.

        QUEUING and IN_PROGRESS profiles have their photos in storage and are queued for
        training again; a VALIDATING one's sources were only in memory, so it is failed.
        Run once at start-up, before serving. Returns how many were requeued and failed.
        """
        with self.sessions() as session:
            unfinished = session.execute(
                select(Profile.id, Profile.status)
                .where(Profile.status.in_(UNFINISHED))
                .order_by(Profile.created_at, Profile.id)
            ).all()
        requeued = failed = 0
        for profile_id, status in unfinished:
            if status == "VALIDATING":
                self._fail(
                    profile_id,
                    "The service restarted while this profile's photos were being "
                    "validated; the reserved credit was refunded. Add the profile again.",
                )
                failed += 1
                continue
            with self.sessions.begin() as session:
                _move(session, profile_id, ("IN_PROGRESS",), status="QUEUING")
            requeued += self._submit(self._train, profile_id)
        if unfinished:
            log.info("recovered profiles", extra={"requeued": requeued, "failed": failed})
        return {"requeued": requeued, "failed": failed}

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no training work is queued or running; False on timeout."""
        with self._waiting_changed:
            return self._waiting_changed.wait_for(lambda: self._waiting == 0, timeout_s)

    def close(self) -> None:
        """Stop the training thread; profiles not finished resume on the next start."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- the work, on the training thread -------------------------------------------------

    def _submit(self, task: Callable[..., None], profile_id: str, *args: Any) -> bool:
        """Queue ``task(profile_id, *args)``; False when the executor is shut down."""
        with self._waiting_changed:
            self._waiting += 1
        try:
            self._executor.submit(self._run_task, task, profile_id, *args)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            self._task_done()
            return False
        return True

    def _task_done(self) -> None:
        with self._waiting_changed:
            self._waiting -= 1
            self._waiting_changed.notify_all()

    def _run_task(self, task: Callable[..., None], profile_id: str, *args: Any) -> None:
        try:
            task(profile_id, *args)
        except Exception:
            log.exception("profile training failed", extra={"profile_id": profile_id})
            self._fail(
                profile_id,
                "Training failed inside the service; the reserved credit was refunded. "
                "Add the profile again, and report it if it happens again.",
            )
        finally:
            self._task_done()

    def _validate(self, profile_id: str, sources: list[str | None]) -> None:
        """VALIDATING -> QUEUING: fetch, decode and store each photo; note the failures."""
        problems: dict[int, str] = {}
        for index, source in enumerate(sources):
            assert source is not None
            sources[index] = None  # the text can be megabytes: let it go once read
            try:
                pixels = self._load(source)
            except FetchError as error:
                problems[index] = f"could not be fetched: {error.detail}"
                continue
            except ImageError as error:
                problems[index] = f"could not be decoded: {error}"
                continue
            self.storage.put(
                _photo_key(profile_id, index), encode_image(pixels, "jpg"), "image/jpeg"
            )
        with self.sessions.begin() as session:
            profile = session.get(Profile, profile_id)
            photos = None if profile is None else _with_problems(profile.photos, problems)
            moved = photos is not None and _move(
                session, profile_id, ("VALIDATING",), status="QUEUING", photos=photos
            )
        if not moved:
            self._discard_if_deleted(profile_id)
            return
        if not self._submit(self._train, profile_id):
            log.info("profile left QUEUING for the next start", extra={"profile_id": profile_id})

    def _train(self, profile_id: str) -> None:
        """QUEUING -> IN_PROGRESS -> READY | ERROR."""
        with self.sessions.begin() as session:
            if not _move(session, profile_id, ("QUEUING",), status="IN_PROGRESS"):
                return
            profile = session.get(Profile, profile_id)
            assert profile is not None
            notes = list(profile.photos)
        photos = _StoredPhotos(self.storage, profile_id, notes)
        try:
            model = train_profile(photos, min_photos=self.settings.profile_min_photos)
        except ProfileTrainingError as error:
            self._fail(profile_id, _error_message(error, notes, photos.lost))
            return
        self.storage.put(_picture_key(profile_id), encode_image(model.picture, "jpg"), "image/jpeg")
        with self.sessions.begin() as session:
            moved = _move(
                session,
                profile_id,
                ("IN_PROGRESS",),
                status="READY",
                model=model.to_dict(),
                message=_ready_message(model, notes, photos.lost),
            )
            if moved:
                profile = session.get(Profile, profile_id)
                assert profile is not None
                reservation = _reservation(session, profile)
                billing.settle(session, reservation, reservation.amount)
        if not moved:
            self._discard_if_deleted(profile_id)
            return
        log.info("profile ready", extra={"profile_id": profile_id, "used": len(model.used)})

    # ---- helpers --------------------------------------------------------------------------

    def _check_request(
        self, image_sources: Sequence[str], tier: TrainingTier, tag: str | None
    ) -> None:
        if tier not in self.prices:
            raise ProfileFieldError(
                "training_tier", f'training_tier must be "standard" or "fast", not {tier!r}.'
            )
        fewest, most = self.photo_limits(tier)
        count = len(image_sources)
        if not fewest <= count <= most:
            other: TrainingTier = "fast" if tier == "standard" else "standard"
            other_fewest, other_most = self.photo_limits(other)
            hint = (
                f' Use training_tier "{other}" for {other_fewest}-{other_most} photos.'
                if other_fewest <= count <= other_most
                else ""
            )
            raise ProfileFieldError(
                "image_urls",
                f"The {tier} tier trains from {fewest} to {most} photos; {count} were given.{hint}",
            )
        if tag is not None and not 1 <= len(tag) <= MAX_TAG_LENGTH:
            raise ProfileFieldError(
                "tag", f"tag must be 1 to {MAX_TAG_LENGTH} characters long, or omitted."
            )

    def _load(self, source: str) -> np.ndarray:
        """Fetch (URL) or decode (base64 / data URI) one photo: (H, W, 3) uint8."""
        text = source.strip()
        if _URL_SCHEME.match(text):
            return decode_image(fetch_url(text, self.fetch_policy))
        return decode_image(decode_image_text(text))

    def _fail(self, profile_id: str, message: str) -> bool:
        """Unfinished -> ERROR with a full refund, dropping the photos; False if it was not."""
        with self.sessions.begin() as session:
            moved = _move(session, profile_id, UNFINISHED, status="ERROR", message=message)
            if moved:
                profile = session.get(Profile, profile_id)
                assert profile is not None
                billing.refund(
                    session,
                    _reservation(session, profile),
                    note=f"profile {profile_id} failed to train",
                )
                # Nothing can use the photos of a failed profile. Deleted before the commit
                # makes ERROR visible, so a client that sees ERROR sees them gone.
                self.storage.delete_prefix(_prefix(profile_id))
        if moved:
            log.info("profile failed", extra={"profile_id": profile_id})
        else:
            self._discard_if_deleted(profile_id)
        return moved

    def _discard_if_deleted(self, profile_id: str) -> None:
        """Remove what the training thread stored for a profile deleted meanwhile."""
        with self.sessions() as session:
            if session.get(Profile, profile_id) is None:
                self.storage.delete_prefix(_prefix(profile_id))


class _StoredPhotos(Sequence[np.ndarray | None]):
    """A profile's photos, decoded from storage one at a time when read.

    Up to 50 photos of up to 4096 px would be gigabytes if decoded at once. An entry is
    None when the photo could not be fetched or decoded, or its stored copy is gone (its
    index is then added to ``lost``).
    """

    def __init__(self, storage: Storage, profile_id: str, notes: list[dict[str, Any]]) -> None:
        self._storage = storage
        self._profile_id = profile_id
        self._notes = notes
        self.lost: set[int] = set()

    def __len__(self) -> int:
        return len(self._notes)

    def __getitem__(self, index: int) -> np.ndarray | None:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("stored photos are read one at a time")
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        if self._notes[index]["problem"] is not None:
            return None
        try:
            data = self._storage.get(_photo_key(self._profile_id, index)).data
        except ObjectNotFound:
            self.lost.add(index)
            return None
        return decode_image(data)

    def __iter__(self) -> Iterator[np.ndarray | None]:
        return (self[index] for index in range(len(self)))


# --- rows, keys and messages -----------------------------------------------------------


def _owned(session: Session, account_id: str, profile_id: str) -> Profile:
    profile = session.get(Profile, profile_id)
    if profile is None or profile.account_id != account_id:
        raise ProfileNotFound(
            f"Profile {profile_id!r} was not found for this account. "
            "Check the id with GET /v1/phota/profiles/ids."
        )
    return profile


def _move(session: Session, profile_id: str, from_statuses: Sequence[str], **values: Any) -> bool:
    """Set ``values`` if the profile's status is one of ``from_statuses``; True if it was."""
    return transition(session, Profile, profile_id, from_statuses, updated_at=utcnow(), **values)


def _reservation(session: Session, profile: Profile) -> billing.Reservation:
    return billing.load_reservation(session, profile.reservation_id)


def _prefix(profile_id: str) -> str:
    return f"profiles/{profile_id}"


def _photo_key(profile_id: str, index: int) -> str:
    return f"profiles/{profile_id}/photos/{index}"


def _picture_key(profile_id: str) -> str:
    return f"profiles/{profile_id}/picture.jpg"


def _label(index: int, source: str) -> str:
    """How messages name a photo: its place in the request, and its URL without the query
    (which often holds a signature: not something to echo back or keep)."""
    label = f"image_urls[{index}]"
    text = source.strip()
    if not _URL_SCHEME.match(text[:50]):
        return label
    parts = urlsplit(text[:2048])
    address = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if len(address) > _LABEL_URL_CHARS:
        address = address[:_LABEL_URL_CHARS] + "..."
    return f"{label} ({address})"


def _with_problems(notes: list[dict[str, Any]], problems: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {**note, "problem": problems.get(index, note["problem"])}
        for index, note in enumerate(notes)
    ]


def _not_used(
    rejections: Sequence[PhotoRejection], notes: list[dict[str, Any]], lost: set[int]
) -> str:
    """ "image_urls[2] (https://..): no face found; image_urls[5]: ...": each rejected photo
    named as the client sent it, with our own words for the photos the trainer only saw
    as None (not fetched, not decoded, stored copy lost)."""
    lines = []
    for rejection in sorted(rejections, key=lambda rejection: rejection.index):
        note = notes[rejection.index]
        why = note["problem"] or rejection.detail
        if rejection.index in lost:
            why = "its stored copy was lost; add the profile again"
        lines.append(f"{note['label']}: {why.rstrip('.')}")  # the list adds the stops
    return "; ".join(lines)


def _ready_message(model: ProfileModel, notes: list[dict[str, Any]], lost: set[int]) -> str:
    used = f"Trained from {len(model.used)} of {len(notes)} photos."
    if not model.rejected:
        return used
    return f"{used} Not used: {_not_used(model.rejected, notes, lost)}."


def _error_message(error: ProfileTrainingError, notes: list[dict[str, Any]], lost: set[int]) -> str:
    summary = (
        f"Training failed: {error.usable} of {len(notes)} photos show the person clearly "
        f"enough; at least {error.needed} are needed."
    )
    failed = (
        f" Photos not used: {_not_used(error.rejections, notes, lost)}." if error.rejections else ""
    )
    return f"{summary}{failed} The reserved credit was refunded."

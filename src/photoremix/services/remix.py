"""The remix use case: from a validated request to stored outputs and a settled bill.

One remix, synchronous or async, goes through the same steps:

1. ``submit`` checks what can be checked without work (field combinations, callback URL,
   profiles, idempotency, balance), takes a place in the worker pool (503 when none is
   left), fetches and decodes both images (a bad image is a 400 with nothing written),
   then creates the job (``running`` if a worker is free for it, else ``queued``) and
   reserves the worst case in one transaction, and hands the job to its place.
2. ``_run`` (on a worker thread) renders the outputs, encodes them, stores them (``urls``
   mode), and finishes the job: settle for what was produced, or refund everything.
3. A synchronous caller waits for the job with ``wait``; past the time limit the job is
   failed with a refund (504) and whatever the worker still produces is thrown away. An
   async job's owner polls ``job_document`` and, if it gave a ``callback_url``, receives
   the same document signed (see ``services.webhooks``).

This module knows nothing of HTTP frameworks; failures are ``ServiceError`` subclasses
that carry the HTTP status the API answers with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from photoremix.engines import (
    ContentModerationError,
    Engine,
    EngineError,
    IdentityImage,
    RemixOutput,
    RemixRequest,
)
from photoremix.imaging import (
    ImageError,
    decode_image,
    decode_image_text,
    encode_image,
    media_type,
    output_size_2k,
)
from photoremix.net.fetch import FetchError, FetchPolicy, fetch_url
from photoremix.observability import Metrics
from photoremix.persistence.models import Account, Job
from photoremix.services import billing, identity, jobs, webhooks
from photoremix.services.jobs import JobFailure

if TYPE_CHECKING:
    from photoremix.services.profiles import ProfileService
from photoremix.settings import Settings
from photoremix.storage import ObjectNotFound, Storage, UrlSigner

log = logging.getLogger(__name__)

API_PREFIX = "/v1/phota"
JOB_PATH = API_PREFIX + "/jobs/{job_id}"
FILE_PATH = API_PREFIX + "/files/{key}"
_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


# --- errors: each carries the HTTP status and a machine code ---------------------------


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class InvalidRequest(ServiceError):
    status_code = 400
    code = "invalid_request"


class PaymentRequired(ServiceError):
    status_code = 402
    code = "insufficient_credit"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class Busy(ServiceError):
    status_code = 503
    code = "busy"
    retry_after_s = 5


class TimedOut(ServiceError):
    status_code = 504
    code = "timeout"


class RemixFailed(ServiceError):
    status_code = 500
    code = "engine_error"


# --- what comes in and goes out --------------------------------------------------------


@dataclass(frozen=True)
class RemixSubmission:
    """A remix request after type validation (the API layer's schema does that)."""

    input_image: str
    reference_image: str
    num_output_images: int = 1
    output_format: Literal["jpg", "png"] = "jpg"
    response_mode: Literal["bytes", "urls"] = "bytes"
    prompt: str | None = None
    profile_ids: tuple[str, ...] = ()
    is_async: bool = False
    callback_url: str | None = None
    client_request_id: str | None = None
    seed: int | None = None
    style_strength: float | None = None
    engine: str | None = None

    def fingerprint(self) -> str:
        """SHA-256 of the whole request: a retry with the same id must match it."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LoadedImage:
    """An input image: its encoded bytes (kept for async jobs), its pixels (H, W, 3), and
    the seconds it took to fetch or base64-decode and then decode it."""

    encoded: bytes
    pixels: np.ndarray
    seconds: float = 0.0


@dataclass(frozen=True)
class Accepted:
    """An async job was accepted (or an identical earlier submit was found)."""

    job_id: str
    poll_url: str


@dataclass
class Pending:
    """A synchronous remix on its way; pass it to ``RemixService.wait``.

    buffers: what the worker leaves of the job's large buffers (its outputs' pixels).
    Clear it after sending the response: freeing ~13 MB per output (munmap) holds the GIL
    for about half a millisecond, which would otherwise come between the worker's result
    and the response.
    """

    job_id: str
    future: Future[dict[str, Any]]
    deadline: float
    cancel: threading.Event = field(default_factory=threading.Event)
    buffers: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Replayed:
    """A synchronous submit repeated with the same ``client_request_id``: the first result."""

    response: dict[str, Any]


@dataclass
class _Rendered:
    """Outputs after the identity check, with the profiles recognised in them."""

    outputs: list[RemixOutput]
    counts: dict[str, int]  # profile id -> outputs in which it was recognised
    recognised_outputs: int  # outputs with at least one recognised profile


class _Cancelled(Exception):
    """Raised inside the engine's progress callback to stop a job that timed out."""


# --- the service -----------------------------------------------------------------------


class RemixService:
    """Runs remixes for accounts: validation, money, workers, storage and callbacks.

    sessions: database sessions (committed here, one transaction per step).
    storage / signer: where outputs go and how their download links are signed.
    engines: the enabled engines by name (``settings.default_engine`` among them); pool:
        the bounded worker pool they run on.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        storage: Storage,
        signer: UrlSigner,
        engines: Mapping[str, Engine],
        pool: Any,  # workers.WorkerPool (Any keeps services free of the workers package)
        metrics: Metrics | None = None,
        profiles: ProfileService | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.signer = signer
        self.engines = dict(engines)
        self.pool = pool
        self.metrics = metrics or Metrics()
        self.profiles = profiles
        self.prices = billing.Prices.from_settings(settings)
        self.fetch_policy = FetchPolicy(
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
            allow_hosts=frozenset(settings.allow_hosts),
        )
        # Callbacks wait on other people's servers (and back off between attempts): they
        # get their own threads so they never hold an engine worker.
        self._callbacks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="callback")
        # Frees a job's input images while its outputs are encoded (see ``_run``).
        self._releaser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="release")

    # ---- submitting ---------------------------------------------------------------------

    def submit(
        self, account: Account, submission: RemixSubmission, base_url: str
    ) -> Accepted | Pending | Replayed:
        """Validate, load the images, reserve the money and start the job (see module doc)."""
        self._check_combination(submission)
        profile_ids = _mentioned_profiles(submission)
        if profile_ids:
            if self.profiles is None:
                raise NotFound(
                    f"Profile {profile_ids[0]!r} was not found for this account.",
                    code="profile_not_found",
                )
            self.profiles.ready_models(account.id, profile_ids)  # 400 naming a bad one
        fingerprint = submission.fingerprint() if submission.client_request_id else ""
        if submission.client_request_id:
            earlier = self._earlier_submit(account.id, submission, fingerprint, base_url)
            if earlier is not None:
                return earlier
        worst_case = self.prices.worst_case(submission.num_output_images)
        if account.balance < worst_case:
            raise PaymentRequired(
                f"Insufficient prepaid credit balance: {worst_case} required for "
                f"{submission.num_output_images} output(s), {account.balance} available."
            )
        # The place in the pool is taken before any work; given back if no job goes into it.
        with self._pool_place() as place:
            content = self._load(submission.input_image, "input_image")
            reference = self._load(submission.reference_image, "reference_image")
            params = self._job_params(account.id, submission, base_url)
            # A worker is free for it: the job is created running, saving the worker a
            # transaction to mark it so.
            job_id = self._create_job(
                account.id, submission, params, fingerprint, worst_case, place.starts_now
            )
            if job_id is None:  # a concurrent identical submit won the race for the id
                earlier = self._earlier_submit(account.id, submission, fingerprint, base_url)
                assert earlier is not None
                return earlier
            started = (params, submission.is_async) if place.starts_now else None
            buffers: list[Any] = [(content, reference)]  # the worker takes the inputs out
            if submission.is_async:
                self._keep_inputs(job_id, content, reference)
                self._start(job_id, buffers, deadline=None, place=place, started=started)
                return Accepted(job_id=job_id, poll_url=self._poll_url(base_url, job_id))
            deadline = time.monotonic() + self.settings.sync_timeout_s
            cancel = threading.Event()
            future = self._start(job_id, buffers, deadline, cancel, place=place, started=started)
            return Pending(job_id, future, deadline, cancel, buffers)

    def wait(self, pending: Pending) -> dict[str, Any]:
        """The response of a synchronous remix; raises its ``ServiceError`` on failure."""
        try:
            return pending.future.result(timeout=max(0.0, pending.deadline - time.monotonic()))
        except FutureTimeout:
            pending.cancel.set()
            limit = self.settings.sync_timeout_s
            failure = JobFailure(
                504,
                "timeout",
                f"The remix took longer than the time limit of {limit:g} s; "
                "the reserved credit was refunded. Try async: true for long work.",
            )
            if self._fail(pending.job_id, failure):
                raise TimedOut(failure.detail) from None
            # The worker finished in the same instant: its result stands.
            return pending.future.result()

    # ---- reading --------------------------------------------------------------------------

    def job_document(self, account_id: str, job_id: str) -> dict[str, Any]:
        """What ``GET /v1/phota/jobs/{job_id}`` returns; another account's job is a 404."""
        with self.sessions() as session:
            job = jobs.get_job(session, account_id, job_id)
            if job is None:
                raise NotFound(f"Job {job_id!r} was not found.", code="job_not_found")
            return self._document(job)

    # ---- start-up and shutdown ---------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Resume or fail (with a refund) every job left unfinished by the last process.

        Async jobs whose inputs were kept are queued again; a synchronous job's caller is
        gone, so it is failed and refunded. Returns how many were resumed and failed.
        Run once at start-up, before serving, by the only process using the database.
        """
        resumed = failed = 0
        with self.sessions() as session:
            unfinished = [(job.id, job.is_async) for job in jobs.unfinished_jobs(session)]
        interrupted = JobFailure(
            503,
            "interrupted",
            "The service restarted while this remix was running; the reserved credit was "
            "refunded. Submit it again.",
        )
        for job_id, is_async in unfinished:
            if is_async and self._has_inputs(job_id):
                with self.sessions.begin() as session:
                    jobs.requeue(session, job_id)
                try:
                    self._start(job_id, [], deadline=None)
                    resumed += 1
                except Busy:  # _start failed it with a refund
                    failed += 1
                continue
            if self._fail(job_id, interrupted):
                failed += 1
        if unfinished:
            log.info("recovered jobs", extra={"resumed": resumed, "failed": failed})
        return {"resumed": resumed, "failed": failed}

    def close(self) -> None:
        """Stop callback delivery threads (pending deliveries are abandoned)."""
        self._callbacks.shutdown(wait=False, cancel_futures=True)
        self._releaser.shutdown(wait=False)

    def purge_expired_outputs(self) -> int:
        """Delete outputs older than the retention period; returns how many.

        Only ``outputs/``: kept inputs of unfinished jobs and profile photos stay.
        """
        from datetime import UTC, datetime, timedelta

        cutoff = datetime.now(UTC) - timedelta(hours=self.settings.retention_hours)
        return self.storage.delete_older_than(cutoff, prefix="outputs")

    # ---- the work, on a worker thread ----------------------------------------------------

    def _pool_place(self) -> Any:
        """A place in the worker pool (``workers.Place``), or ``Busy``."""
        from photoremix.workers import PoolFull

        try:
            return self.pool.reserve()
        except PoolFull:
            raise Busy(
                f"The service is busy: all {self.pool.capacity} places (running or waiting) "
                f"are taken. Retry after {Busy.retry_after_s} seconds."
            ) from None

    def _start(
        self,
        job_id: str,
        buffers: list[Any],
        deadline: float | None,
        cancel: threading.Event | None = None,
        *,
        place: Any = None,
        started: tuple[dict[str, Any], bool] | None = None,
    ) -> Future[dict[str, Any]]:
        """Hand the job to a worker: in ``place`` (taken by ``submit``), else in a place
        taken now (a resumed job), failing the job if there is none."""
        from photoremix.workers import PoolFull

        cancel = cancel or threading.Event()
        runner = place if place is not None else self.pool  # both have submit()
        try:
            future: Future[dict[str, Any]]
            future = runner.submit(self._run, job_id, buffers, deadline, cancel, started)
            return future
        except PoolFull as full:  # only without a place
            self._fail(job_id, JobFailure(503, "busy", str(full)))
            raise Busy(str(full)) from None

    def _run(
        self,
        job_id: str,
        buffers: list[Any],
        deadline: float | None,
        cancel: threading.Event,
        started: tuple[dict[str, Any], bool] | None,
    ) -> dict[str, Any]:
        """Render, store and settle one job. Returns the sync response; raises ServiceError.

        buffers: holds the job's input images (LoadedImage, LoadedImage), taken out so that
        this call holds the only reference (empty for a resumed job: its inputs are read
        back from storage); the rendered outputs are left in it (see ``Pending``).
        started: (params, is_async) of a job created ``running`` (a worker was free for it
        at submit); None for a queued job, which is marked running here.
        """
        if started is None:
            with self.sessions.begin() as session:
                started = jobs.mark_running(session, job_id)
            if started is None:
                raise TimedOut("The remix was cancelled before it started.")
        params, is_async = started
        if deadline is None:
            deadline = time.monotonic() + self.settings.async_timeout_s
        try:
            inputs = buffers.pop() if buffers else self._kept_inputs(job_id)
            rendered = self._render(params, inputs, deadline, cancel)
            # Freed here, after the work, ~25 MB of input pixels would hold the GIL for about
            # a millisecond, which the event loop would wait out before sending the response;
            # freed on another thread, it happens while the outputs are encoded (the
            # encoders release the GIL).
            self._releaser.submit(_release, inputs)
            del inputs
            response, stored_keys = self._deliver_outputs(job_id, params, rendered)
        except _Cancelled:
            self._fail(job_id, _timeout_failure(self.settings, is_async))
            raise TimedOut("The remix exceeded its time limit.") from None
        except ServiceError as error:
            self._fail(job_id, JobFailure(error.status_code, error.code, error.detail))
            raise
        except Exception:
            log.exception("remix job failed", extra={"job_id": job_id})
            failure = JobFailure(
                500, "internal_error", "The remix failed inside the service; nothing was charged."
            )
            self._fail(job_id, failure)
            raise RemixFailed(failure.detail, code=failure.code) from None

        # What the database keeps: storage keys, not signed URLs (signed on every read).
        kept = {**response, "images": [], "download_urls": [], "output_keys": stored_keys}
        outputs, recognised = len(rendered.outputs), rendered.recognised_outputs
        charge = jobs.prices_of(params).charge(outputs, recognised)
        with self.sessions.begin() as session:
            succeeded = jobs.succeed(session, job_id, kept, charge)
        if not succeeded:  # timed out meanwhile: the caller got a 504 and a refund
            for key in stored_keys:
                self.storage.delete(key)
            raise TimedOut("The remix exceeded its time limit.")
        self.metrics.outputs_billed.labels("plain").inc(outputs - recognised)
        self.metrics.outputs_billed.labels("recognised").inc(recognised)
        self.metrics.jobs_finished.labels("succeeded").inc()
        if is_async:
            self._after_async(job_id)
        buffers.append(rendered)
        return response

    def _render(
        self,
        params: dict[str, Any],
        inputs: tuple[LoadedImage, LoadedImage],
        deadline: float,
        cancel: threading.Event,
    ) -> _Rendered:
        """Recognise, render, check every output's faces and re-render drifted ones."""
        content, reference = (image.pixels for image in inputs)

        def check_time(done: int = 0, total: int = 0) -> None:
            if cancel.is_set() or time.monotonic() > deadline:
                raise _Cancelled

        started = time.perf_counter()
        candidates = (
            self.profiles.ready_models(params["account_id"], params["profile_ids"])
            if self.profiles is not None and params.get("profile_ids")
            else []
        )
        who = identity.recognise_input(content, candidates)
        recognise_s = time.perf_counter() - started
        engine = self.engines.get(params.get("engine", self.settings.default_engine))
        if engine is None:  # a job resumed after the operator disabled its engine
            raise InvalidRequest(
                f"Engine {params['engine']!r} is no longer enabled on this server.",
                code="engine_unavailable",
            )
        request = RemixRequest(
            content=content,
            reference=reference,
            output_size=output_size_2k(content.shape[1], content.shape[0]),
            prompt=identity.engine_prompt(params["prompt"], who),
            faces=tuple(observation.face for observation in who.faces),
            num_outputs=params["num_output_images"],
            seed=params["seed"],
            style_strength=params["style_strength"],
            identities=self._identity_images(params["account_id"], who),
        )
        checked = identity.render_keeping_identity(
            lambda r: self._run_engine(engine, r, check_time),
            request,
            who,
            candidates,
            max_distance=self.settings.identity_max_distance,
            rerender_attempts=self.settings.identity_rerender_attempts,
            before_each=check_time,
        )
        counts: dict[str, int] = {}
        for item in checked:
            for profile_id in item.recognised_profiles:
                counts[profile_id] = counts.get(profile_id, 0) + 1
        outputs = [item.output for item in checked]
        outputs[0].report.timings["recognise"] = recognise_s
        outputs[0].report.timings["load_inputs"] = sum(image.seconds for image in inputs)
        recognised_outputs = sum(bool(item.recognised_profiles) for item in checked)
        return _Rendered(outputs, counts, recognised_outputs)

    def _run_engine(
        self, engine: Engine, request: RemixRequest, check_time: Callable[[int, int], None]
    ) -> list[RemixOutput]:
        started = time.perf_counter()
        try:
            outputs = engine.remix(request, progress=check_time)
        except ContentModerationError as error:
            raise InvalidRequest(
                f"The {engine.name} engine's provider refused this content ({error.reason}): "
                f"{error}",
                code="CONTENT_MODERATION",
            ) from None
        except EngineError as error:
            raise RemixFailed(f"The {engine.name} engine failed: {error}") from None
        finally:
            self.metrics.engine_seconds.labels(engine.name).inc(time.perf_counter() - started)
        check_time(len(outputs), len(outputs))
        return outputs

    def _identity_images(
        self, account_id: str, who: identity.InputIdentity
    ) -> tuple[IdentityImage, ...]:
        """The pictures of the profiles recognised in the input, named as in the prompt."""
        if self.profiles is None:
            return ()
        images = []
        for profile_id in dict.fromkeys(who.assigned.values()):
            picture = decode_image(self.profiles.picture_of(account_id, profile_id))
            images.append(IdentityImage(name=who.position_of(profile_id), image=picture))
        return tuple(images)

    def _deliver_outputs(
        self, job_id: str, params: dict[str, Any], rendered: _Rendered
    ) -> tuple[dict[str, Any], list[str]]:
        """Encode the outputs: base64 in the response (bytes) or stored + signed (urls)."""
        fmt = params["output_format"]
        images: list[str] = []
        keys: list[str] = []
        reports: list[dict[str, Any]] = []
        for index, output in enumerate(rendered.outputs):
            started = time.perf_counter()
            data = encode_image(output.image, fmt)
            if params["response_mode"] == "urls":
                key = f"outputs/{job_id}/{index}.{fmt}"
                self.storage.put(key, data, media_type(fmt))
                keys.append(key)
            else:
                images.append(base64.b64encode(data).decode("ascii"))
            output.report.timings["encode"] = time.perf_counter() - started
            reports.append(_report_dict(output))
        response = {
            "known_subjects": {"counts": rendered.counts},
            "images": images,
            "download_urls": [self._download_url(params["base_url"], key) for key in keys],
            "reports": reports,
        }
        return response, keys

    # ---- async extras: kept inputs and callbacks ------------------------------------------

    def _keep_inputs(self, job_id: str, content: LoadedImage, reference: LoadedImage) -> None:
        # A restart can resume the job from these (deleted when the job finishes).
        self.storage.put(f"jobs/{job_id}/input", content.encoded, "application/octet-stream")
        self.storage.put(f"jobs/{job_id}/reference", reference.encoded, "application/octet-stream")

    def _has_inputs(self, job_id: str) -> bool:
        try:
            self._kept_inputs(job_id)
        except (ObjectNotFound, ImageError):
            return False
        return True

    def _kept_inputs(self, job_id: str) -> tuple[LoadedImage, LoadedImage]:
        loaded = []
        for role in ("input", "reference"):
            started = time.perf_counter()
            encoded = self.storage.get(f"jobs/{job_id}/{role}").data
            pixels = decode_image(encoded)
            loaded.append(LoadedImage(encoded, pixels, seconds=time.perf_counter() - started))
        return loaded[0], loaded[1]

    def _after_async(self, job_id: str) -> None:
        """Drop the kept inputs and send the callback, if one was asked for."""
        self.storage.delete_prefix(f"jobs/{job_id}")
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            callback_url = job.params.get("callback_url")
            if not callback_url:
                return
            account = session.get(Account, job.account_id)
            assert account is not None
            secret = account.webhook_secret
            body = json.dumps(self._document(job), separators=(",", ":")).encode("utf-8")
        with self.sessions.begin() as session:
            jobs.set_callback_status(session, job_id, "pending")
        self._callbacks.submit(self._send_callback, job_id, callback_url, body, secret)

    def _send_callback(self, job_id: str, url: str, body: bytes, secret: str) -> None:
        try:
            self._deliver_callback(job_id, url, body, secret)
        except Exception:  # a thread pool would swallow it silently
            log.exception("callback delivery crashed", extra={"job_id": job_id})
            with self.sessions.begin() as session:
                jobs.set_callback_status(session, job_id, "failed")

    def _deliver_callback(self, job_id: str, url: str, body: bytes, secret: str) -> None:
        result = webhooks.deliver(
            url,
            body,
            secret,
            self.fetch_policy,
            attempts=self.settings.callback_attempts,
            first_backoff_s=self.settings.callback_first_backoff_s,
        )
        with self.sessions.begin() as session:
            jobs.set_callback_status(session, job_id, "delivered" if result.delivered else "failed")
        log.info(
            "callback %s", "delivered" if result.delivered else "failed",
            extra={"job_id": job_id, "attempts": result.attempts, "status": result.last_status,
                   "error": result.last_error},
        )  # fmt: skip

    # ---- helpers --------------------------------------------------------------------------

    def _check_combination(self, submission: RemixSubmission) -> None:
        engine = submission.engine or self.settings.default_engine
        if engine not in self.engines:
            raise InvalidRequest(
                f"Engine {engine!r} is not available on this server; available: "
                f"{', '.join(sorted(self.engines))} (see GET /v1/engines).",
                code="engine_unavailable",
            )
        if submission.is_async and submission.response_mode != "urls":
            raise InvalidRequest(
                'async: true needs response_mode: "urls" (the images of an async job are '
                "delivered as download URLs when it finishes)."
            )
        if submission.callback_url is not None:
            if not submission.is_async:
                raise InvalidRequest("callback_url is only accepted with async: true.")
            try:
                webhooks.check_callback_url(
                    submission.callback_url, frozenset(self.settings.allow_hosts)
                )
            except webhooks.CallbackUrlError as error:
                raise InvalidRequest(str(error), code="invalid_callback_url") from None

    def _earlier_submit(
        self, account_id: str, submission: RemixSubmission, fingerprint: str, base_url: str
    ) -> Accepted | Replayed | None:
        """The answer to a repeated ``client_request_id``, or None if it is new."""
        assert submission.client_request_id is not None
        with self.sessions() as session:
            job = jobs.find_by_client_request_id(session, account_id, submission.client_request_id)
            if job is None:
                return None
            if job.request_hash != fingerprint:
                raise Conflict(
                    f"client_request_id {submission.client_request_id!r} was already used for a "
                    "different request. Use a new id for a new request.",
                    code="idempotency_conflict",
                )
            if job.is_async:
                return Accepted(job_id=job.id, poll_url=self._poll_url(job.base_url, job.id))
            document = self._document(job)
        if document["status"] == "succeeded" and submission.response_mode == "urls":
            return Replayed(document["result"])
        state = {
            "queued": "is still running",
            "running": "is still running",
            "failed": "failed",
            "succeeded": "returned its images inline, which are not kept",
        }[document["status"]]
        raise Conflict(
            f"The synchronous request with client_request_id {submission.client_request_id!r} "
            f"{state}. Use a new client_request_id to remix again.",
            code="idempotency_conflict",
        )

    def _job_params(
        self, account_id: str, submission: RemixSubmission, base_url: str
    ) -> dict[str, Any]:
        """What a worker needs to run the job, kept in its row (no images)."""
        return {
            "account_id": account_id,
            "profile_ids": _mentioned_profiles(submission),
            "engine": submission.engine or self.settings.default_engine,
            "num_output_images": submission.num_output_images,
            "output_format": submission.output_format,
            "response_mode": submission.response_mode,
            "prompt": submission.prompt,
            "seed": submission.seed if submission.seed is not None else _random_seed(),
            "style_strength": submission.style_strength,
            "callback_url": submission.callback_url,
            "base_url": base_url,
            "prices": {
                "per_output": str(self.prices.per_output),
                "per_recognised_output": str(self.prices.per_recognised_output),
            },
        }

    def _create_job(
        self,
        account_id: str,
        submission: RemixSubmission,
        params: dict[str, Any],
        fingerprint: str,
        worst_case: Any,
        running: bool,
    ) -> str | None:
        try:
            with self.sessions.begin() as session:
                return jobs.create_job(
                    session,
                    account_id=account_id,
                    is_async=submission.is_async,
                    params=params,
                    base_url=params["base_url"],
                    reserve=worst_case,
                    client_request_id=submission.client_request_id,
                    request_hash=fingerprint,
                    running=running,
                )
        except billing.InsufficientBalance as error:
            raise PaymentRequired(str(error)) from None
        except IntegrityError:
            if submission.client_request_id is None:
                raise
            return None

    def _load(self, source: str, field_name: str) -> LoadedImage:
        """Fetch (URL) or decode (base64 / data URI) one input; 400 on any problem."""
        started = time.perf_counter()
        try:
            if _URL_SCHEME.match(source.strip()):
                encoded = fetch_url(source.strip(), self.fetch_policy)
            else:
                encoded = decode_image_text(source)
            pixels = decode_image(encoded)
            return LoadedImage(encoded, pixels, seconds=time.perf_counter() - started)
        except FetchError as error:
            raise InvalidRequest(f"{field_name}: {error}", code="image_fetch_failed") from None
        except ImageError as error:
            raise InvalidRequest(f"{field_name}: {error}", code=f"image_{error.code}") from None

    def _fail(self, job_id: str, failure: JobFailure) -> bool:
        """Fail the job with a full refund, unless it already finished; True if it was."""
        with self.sessions.begin() as session:
            if not jobs.fail(session, job_id, failure):
                return False
            job = session.get(Job, job_id)
            is_async = job is not None and job.is_async
        self.metrics.jobs_finished.labels(failure.code).inc()
        try:  # outputs stored before the failure are worthless now
            self.storage.delete_prefix(f"outputs/{job_id}")
        except Exception:  # storage trouble must not hide the failure just recorded
            log.exception("could not delete outputs of failed job", extra={"job_id": job_id})
        if is_async:
            self._after_async(job_id)
        return True

    def _document(self, job: Job) -> dict[str, Any]:
        document: dict[str, Any] = {
            "job_id": job.id,
            "status": job.status,
            "poll_url": self._poll_url(job.base_url, job.id),
            "created_at": job.created_at.isoformat(),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "result": None,
            "error": None,
        }
        if job.status == "succeeded" and job.result is not None:
            kept = job.result
            document["result"] = {
                "known_subjects": kept["known_subjects"],
                "images": [],
                "download_urls": [
                    self._download_url(job.base_url, key) for key in kept["output_keys"]
                ],
                "reports": kept["reports"],
            }
        elif job.status == "failed" and job.error is not None:
            document["error"] = dict(job.error)
        return document

    def _poll_url(self, base_url: str, job_id: str) -> str:
        return base_url.rstrip("/") + JOB_PATH.format(job_id=job_id)

    def _download_url(self, base_url: str, key: str) -> str:
        return base_url.rstrip("/") + self.signer.sign(FILE_PATH.format(key=key))


def _release(objects: object) -> None:
    """Nothing: the release thread's task holds ``objects``, freed with it on that thread."""


def _mentioned_profiles(submission: RemixSubmission) -> list[str]:
    return identity.mentioned_profiles(submission.profile_ids, submission.prompt)


def _random_seed() -> int:
    return secrets.randbelow(2**31)


def _timeout_failure(settings: Settings, is_async: bool) -> JobFailure:
    limit = settings.async_timeout_s if is_async else settings.sync_timeout_s
    return JobFailure(
        504,
        "timeout",
        f"The remix took longer than the time limit of {limit:g} s; the reserved credit was "
        "refunded.",
    )


def _report_dict(output: RemixOutput) -> dict[str, Any]:
    report = output.report
    return _jsonable(
        {
            "engine": report.engine,
            "seed": report.seed,
            "variation": report.variation,
            "variation_description": report.variation_description,
            "applied": report.applied,
            "unhandled_instructions": report.unhandled_instructions,
            "metrics": report.metrics,
            "timings": {name: round(seconds, 4) for name, seconds in report.timings.items()},
        }
    )


def _jsonable(value: Any) -> Any:
    """Plain JSON types from engine reports (which may hold NumPy scalars and tuples)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value

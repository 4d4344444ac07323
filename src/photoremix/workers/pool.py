"""A bounded worker pool: ``workers`` threads and at most ``queue_size`` waiting tasks.

``concurrent.futures.ThreadPoolExecutor`` queues without limit, so a burst of requests
would pile up work (and reserved credit) that finishes long after clients gave up. Here a
semaphore counts the running and waiting tasks together and ``submit`` refuses at once
when ``workers + queue_size`` are taken: the service answers 503 with ``Retry-After``.
A place can also be reserved before its task is ready (``reserve``), so that a request is
refused before any work is done for it, and knows whether it will start at once.

Threads rather than processes: the engines spend their time in NumPy, OpenCV, dlib and
numba code that releases the GIL, and a thread hands a 2K image over without copying it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class PoolFull(Exception):  # noqa: N818 (reads as a state: "the pool is full")
    """Every worker is busy and the queue is full; try again later."""

    def __init__(self, capacity: int) -> None:
        super().__init__(
            f"The service is busy: all {capacity} places (running or waiting) are taken. "
            "Retry after a few seconds."
        )


class WorkerPool:
    def __init__(self, workers: int, queue_size: int, name: str = "remix") -> None:
        if workers < 1 or queue_size < 0:
            raise ValueError(f"need workers >= 1 and queue_size >= 0, got {workers}, {queue_size}")
        self.workers = workers
        self.capacity = workers + queue_size
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._pending = 0  # places taken: running + waiting + reserved

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker; raise ``PoolFull`` instead of queueing."""
        with self.reserve() as place:
            return place.submit(fn, *args, **kwargs)

    def reserve(self) -> Place:
        """Take a place now, for a task submitted later with ``Place.submit`` (the caller
        prepares its work meanwhile); raise ``PoolFull`` when none is left. Use it as a
        context manager: a place not used by the end of the block is given back."""
        if not self._slots.acquire(blocking=False):
            raise PoolFull(self.capacity)
        with self._lock:
            self._pending += 1
            starts_now = self._pending <= self.workers
        return Place(self, starts_now)

    @property
    def pending(self) -> int:
        """Places taken right now: tasks running or waiting, and reserved places."""
        return self._pending

    @property
    def queue_depth(self) -> int:
        """Tasks waiting for a free worker."""
        return max(0, self._pending - self.workers)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking work; with ``wait``, let submitted tasks finish first."""
        self._executor.shutdown(wait=wait, cancel_futures=not wait)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1
        self._slots.release()


class Place:
    """A place in the pool, held for one task (see ``WorkerPool.reserve``).

    starts_now: a worker was free when the place was taken, and stays free for it (free
    workers are counted with the places), so its task starts as soon as it is submitted.
    """

    def __init__(self, pool: WorkerPool, starts_now: bool) -> None:
        self._pool = pool
        self.starts_now = starts_now
        self._used = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in this place (once)."""
        if self._used:
            raise RuntimeError("this place was already used or given back")
        self._used = True
        try:
            future = self._pool._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._pool._release()
            raise
        future.add_done_callback(lambda _: self._pool._release())
        return future

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._used:  # nothing was submitted: give the place back
            self._used = True
            self._pool._release()

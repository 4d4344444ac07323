"""A bounded worker pool: ``workers`` threads and at most ``queue_size`` waiting tasks.

``concurrent.futures.ThreadPoolExecutor`` queues without limit, so a burst of requests
would pile up work (and reserved credit) that finishes long after clients gave up. Here a
semaphore counts the running and waiting tasks together and ``submit`` refuses at once
when ``workers + queue_size`` are taken: the service answers 503 with ``Retry-After``.

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
        self._pending = 0  # submitted and not finished: running + waiting

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker; raise ``PoolFull`` instead of queueing."""
        if not self._slots.acquire(blocking=False):
            raise PoolFull(self.capacity)
        with self._lock:
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return future

    @property
    def pending(self) -> int:
        """Tasks running or waiting right now."""
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

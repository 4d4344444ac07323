"""workers.WorkerPool: bounded places, reserved before their task is ready."""

from __future__ import annotations

import threading
from contextlib import ExitStack

import pytest

from photoremix.workers import PoolFull, WorkerPool


def test_places_start_now_while_a_worker_is_free_and_run_out_at_capacity() -> None:
    pool = WorkerPool(workers=2, queue_size=1)
    with ExitStack() as held:
        places = [held.enter_context(pool.reserve()) for _ in range(3)]
        assert [place.starts_now for place in places] == [True, True, False]
        assert pool.pending == 3 and pool.queue_depth == 1
        with pytest.raises(PoolFull, match="3 places"):
            pool.reserve()
    assert pool.pending == 0  # unused places are given back
    pool.shutdown()


def test_an_unused_place_is_given_back_even_on_error() -> None:
    pool = WorkerPool(workers=1, queue_size=0)
    with pytest.raises(ValueError), pool.reserve():
        assert pool.pending == 1
        raise ValueError("the request's image was bad")
    assert pool.pending == 0
    with pool.reserve() as place:  # the place is free again
        assert place.starts_now
    pool.shutdown()


def test_a_place_runs_one_task_and_is_freed_when_it_ends() -> None:
    pool = WorkerPool(workers=1, queue_size=0)
    release = threading.Event()
    with pool.reserve() as place:
        future = place.submit(lambda: release.wait(10) and "done")
        with pytest.raises(RuntimeError, match="already used"):
            place.submit(lambda: None)
    assert pool.pending == 1  # leaving the block does not free a place in use
    with pytest.raises(PoolFull):
        pool.reserve()
    release.set()
    assert future.result(10) == "done"
    pool.shutdown()  # waits for the done-callbacks
    assert pool.pending == 0


def test_submit_takes_and_frees_a_place() -> None:
    pool = WorkerPool(workers=1, queue_size=0)
    assert pool.submit(lambda x: x + 1, 41).result(10) == 42
    pool.shutdown()
    assert pool.pending == 0

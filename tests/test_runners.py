"""The pool that runs a host's actors (relay_workers.runners): order, one turn at a time per actor, a
bounded number of threads, spares for waits on other servers, retries, stopping."""

from __future__ import annotations

import threading
import time

import pytest

from relay_workers.runners import Runners, Slot


class Counter:
    """An actor whose turn records what ran, and can be made to wait or to wait 'on another server'."""

    def __init__(self, pool: Runners, name: str, hold: threading.Event | None = None, calls: bool = False) -> None:
        self.pool, self.name, self.hold, self.calls = pool, name, hold, calls
        self.slot = Slot()
        self.turns = 0
        self.inside = 0
        self.overlap = False
        self.lock = threading.Lock()

    def turn(self) -> None:
        with self.lock:
            self.inside += 1
            self.overlap |= self.inside > 1
        if self.hold is not None:
            if self.calls:
                with self.pool.blocking():
                    self.hold.wait(10)
            else:
                self.hold.wait(10)
        time.sleep(0.001)
        with self.lock:
            self.inside -= 1
            self.turns += 1

    def wake(self) -> None:
        self.pool.schedule(self, self.slot)


def eventually(check, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.005)


def test_each_actor_runs_one_turn_at_a_time_and_a_wake_while_running_is_not_lost() -> None:
    pool = Runners(4)
    actors = [Counter(pool, f"a{i}") for i in range(50)]
    for _ in range(20):
        for a in actors:
            a.wake()
    eventually(lambda: all(a.slot.idle.is_set() and not a.slot.queued for a in actors))
    assert not any(a.overlap for a in actors)
    assert all(1 <= a.turns <= 20 for a in actors)
    assert pool.threads <= 4
    before = actors[0].turns
    actors[0].wake()
    eventually(lambda: actors[0].turns == before + 1)
    pool.close()


def test_threads_stay_bounded_however_many_actors() -> None:
    pool = Runners(3)
    hold = threading.Event()
    actors = [Counter(pool, f"a{i}", hold) for i in range(200)]
    for a in actors:
        a.wake()
    time.sleep(0.2)
    assert pool.threads == 3
    assert sum(a.slot.running for a in actors) == 3
    hold.set()
    eventually(lambda: all(a.turns == 1 for a in actors))
    assert pool.threads == 3
    pool.close()


def test_a_wait_on_another_server_lends_a_spare_thread_which_ends_after() -> None:
    pool = Runners(2)
    released = threading.Event()
    callers = [Counter(pool, f"caller{i}", released, calls=True) for i in range(2)]
    for c in callers:
        c.wake()
    eventually(lambda: pool.waiting == 2)
    callee = Counter(pool, "callee")
    callee.wake()  # both threads wait on calls: a spare runs the callee
    eventually(lambda: callee.turns == 1)
    assert pool.threads == 3
    released.set()
    eventually(lambda: all(c.turns == 1 for c in callers))
    callee.wake()  # the spare is over the bound once the waits end: it ends when nothing is queued
    eventually(lambda: pool.threads == 2)
    pool.close()


def test_a_retry_runs_later_and_a_stopped_actor_runs_no_more() -> None:
    pool = Runners(1)
    a = Counter(pool, "a")
    started = time.monotonic()
    pool.later(a, a.slot, 0.2)
    eventually(lambda: a.turns == 1)
    assert time.monotonic() - started >= 0.19
    hold = threading.Event()
    b = Counter(pool, "b", hold)
    b.wake()
    eventually(lambda: b.slot.running)
    stopper = threading.Thread(target=pool.stop, args=(b.slot, 5.0))
    stopper.start()
    time.sleep(0.05)
    assert stopper.is_alive()  # stop waits for the turn in progress
    hold.set()
    stopper.join(5)
    assert not stopper.is_alive()
    b.wake()
    time.sleep(0.05)
    assert b.turns == 1
    pool.close()


def test_an_error_in_a_turn_keeps_the_thread() -> None:
    pool = Runners(1)

    class Broken(Counter):
        def turn(self) -> None:
            raise RuntimeError("a bug")

    broken, fine = Broken(pool, "broken"), Counter(pool, "fine")
    broken.wake()
    fine.wake()
    eventually(lambda: fine.turns == 1)
    assert pool.threads == 1
    pool.close()


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError):
        Runners(0)


def test_threads_with_nothing_to_run_end_and_the_pool_grows_again(monkeypatch) -> None:
    monkeypatch.setattr("relay_workers.runners.KEEP_ALIVE", 0.2)
    pool = Runners(3)
    actors = [Counter(pool, f"a{i}") for i in range(30)]
    for a in actors:
        a.wake()
    eventually(lambda: all(a.turns == 1 for a in actors))
    eventually(lambda: pool.threads == 0)
    actors[0].wake()
    eventually(lambda: actors[0].turns == 2)
    pool.close()

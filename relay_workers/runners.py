"""The threads that run a host's actors: a bounded pool, not a thread per server.

An actor (relay_workers.host.Actor) is *scheduled* when a message may be
waiting for it; one of the pool's threads then runs its `turn` (take a batch
of its journal, apply it, commit, for at most TURN_SECONDS) and schedules it
again if more remain, at the back of the queue. An actor is queued at most
once and run by one thread at a time, so its messages are applied in order;
a woken actor that is running is queued again when its turn ends.

The pool keeps `size` threads able to run turns. A handler that waits on a
call to another server (`blocking`) holds its thread meanwhile, so the pool
starts a spare thread for the time of the wait: servers waiting on servers
queued behind them cannot starve the pool (as Java's ForkJoinPool's managed
blocking). Threads number at most `size` plus the calls waiting at the time;
spares end when their wait is over and nothing is queued, and any thread
ends after KEEP_ALIVE seconds with nothing to run: an idle host holds none.
The threads have the big stack Relay jobs run inline on (relay_lang.budget).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from relay_lang.budget import start_big_stack_thread

log = logging.getLogger("relay.workers")

TURN_SECONDS = 0.1  # an actor with more to do after this long goes to the back of the queue
KEEP_ALIVE = 10.0  # seconds a thread with nothing to run waits before it ends (the pool grows again on demand)


class Runnable(Protocol):
    name: str

    def turn(self) -> None:
        """Applies what waits (for about TURN_SECONDS); reschedules itself through the pool if more does."""


class Slot:
    """An actor's place in the pool: queued, running, woken while running, stopped."""

    def __init__(self) -> None:
        self.queued = False
        self.running = False
        self.woken = False
        self.stopped = False
        self.idle = threading.Event()  # set while no thread runs the actor
        self.idle.set()


class Runners:
    def __init__(self, size: int, name: str = "relay-runner") -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one thread, got {size}")
        self.size = size
        self.name = name
        self.cond = threading.Condition()
        self.ready: deque[tuple[Runnable, Slot]] = deque()
        self.delayed: list[tuple[float, int, Runnable, Slot]] = []  # (when, tiebreak, actor, slot) heap
        self.order = itertools.count()
        self.threads = 0
        self.resting = 0  # threads waiting for an actor to run
        self.waiting = 0  # threads in `blocking` now
        self.closed = False
        self.local = threading.local()

    # ------------------------------------------------------------ what actors ask of the pool

    def schedule(self, actor: Runnable, slot: Slot) -> None:
        """A message may wait for the actor: it runs a turn soon (after its current one, if running)."""
        with self.cond:
            if not self.closed and self._wake(actor, slot):
                self._rouse()

    def later(self, actor: Runnable, slot: Slot, delay: float) -> None:
        """Schedules the actor in `delay` seconds (a retry after a store error)."""
        with self.cond:
            heapq.heappush(self.delayed, (time.monotonic() + delay, next(self.order), actor, slot))
            if self.resting:
                self.cond.notify()  # it waits until the earliest retry
            elif not self.threads:
                self._start()  # busy threads look at the retries when their turns end

    def stop(self, slot: Slot, wait: float) -> None:
        """The actor runs no more turns; waits up to `wait` seconds for one in progress to end."""
        with self.cond:
            slot.stopped = True
        if wait:
            slot.idle.wait(wait)

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """Around a wait on another server: a spare thread runs turns meanwhile (no-op off the pool)."""
        if not getattr(self.local, "runner", False):
            yield
            return
        with self.cond:
            self.waiting += 1
            if self.ready:
                self._rouse()  # what is queued need not wait for this call's reply
        try:
            yield
        finally:
            with self.cond:
                self.waiting -= 1
                self.cond.notify()  # a spare over the bound ends when idle

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.ready.clear()
            self.delayed.clear()
            self.cond.notify_all()

    # ------------------------------------------------------------ the threads

    def _wake(self, actor: Runnable, slot: Slot) -> bool:
        """Marks the actor woken and queues it, unless it is stopped, queued, or running (then it is queued
        again when its turn ends); True when it was queued now."""
        if slot.stopped:
            return False
        slot.woken = True
        if slot.running or slot.queued:
            return False
        slot.queued = True
        self.ready.append((actor, slot))
        return True

    def _rouse(self) -> None:
        """A thread for what is queued: a resting one, or a new one while fewer than `size` can run."""
        if self.resting:
            self.cond.notify()
        elif self.threads - self.waiting < self.size:
            self._start()  # grows to `size` on demand: an idle host holds few threads

    def _start(self) -> None:
        self.threads += 1
        start_big_stack_thread(self._run, f"{self.name}-{next(self.order)}")

    def _next(self) -> tuple[Runnable, Slot] | None:
        """The next actor to run (waiting for one), or None when this thread is to end."""
        with self.cond:
            while True:
                now = time.monotonic()
                while self.delayed and self.delayed[0][0] <= now:
                    _, _, actor, slot = heapq.heappop(self.delayed)
                    self._wake(actor, slot)  # this thread takes it
                if self.closed or (self.threads - self.waiting > self.size and not self.ready):
                    self.threads -= 1
                    return None
                if self.ready:
                    actor, slot = self.ready.popleft()
                    slot.queued = False
                    if slot.stopped:
                        continue
                    slot.running, slot.woken = True, False
                    slot.idle.clear()
                    return actor, slot
                timeout = self.delayed[0][0] - now if self.delayed else KEEP_ALIVE
                self.resting += 1
                try:
                    woken = self.cond.wait(timeout)
                finally:
                    self.resting -= 1
                if not woken and not self.delayed and not self.ready:  # idle for KEEP_ALIVE s: this thread ends
                    self.threads -= 1
                    return None

    def _run(self) -> None:
        self.local.runner = True
        while (job := self._next()) is not None:
            actor, slot = job
            try:
                actor.turn()
            except BaseException:  # noqa: BLE001 - a bug in one actor must not take a thread of the pool
                log.exception("relay: actor %s: unexpected error in its turn", actor.name)
            finally:
                with self.cond:
                    slot.running = False
                    slot.idle.set()
                    if slot.woken and not self.closed:
                        self._wake(actor, slot)  # this thread takes it, or the next in line

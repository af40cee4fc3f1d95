"""Where Relay code runs: a reusable thread with a big C stack, and one watchdog for time limits.

Starting a thread per job (and a timer thread per time limit) cost about
0.3 ms a job; the fleet runs a job per message, so both threads live on.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

from . import _array
from .errors import Pos, RelayError

BIG_STACK = 512 * 1024 * 1024  # bytes of C stack for the thread that runs Relay code
_checks = threading.local()


def reserve(nbytes: int) -> None:
    """Operations about to allocate a large block at once (array(n), a long string) call this first.

    It raises the running job's memory limit error when the block would not fit; outside a job it does nothing.
    """
    check = getattr(_checks, "reserve", None)
    if check is not None:
        check(nbytes)


def checkpoint() -> None:
    """Long operations on values (printing, comparing, copying) call this every few thousand steps.

    It raises the running job's limit error once its time is up (see `checking`); outside a job it does nothing.
    """
    check = getattr(_checks, "check", None)
    if check is not None:
        check()


FRONT_END_CHECK = 4096  # tokens the lexer makes, or the parser takes, between two checkpoints
STATEMENT_CHECK = 512  # statements the resolver or the code generator visits between two checkpoints


def checkpoint_at(pos: Pos) -> None:
    """checkpoint(), its error placed at pos (the front end's passes, which run before any frame exists)."""
    try:
        checkpoint()
    except RelayError as err:
        raise err.at(pos) from None


@contextmanager
def checking(check: Callable[[], None], reserve: Callable[[int], None] | None = None) -> Iterator[None]:
    """Makes `check` what `checkpoint` calls, and `reserve` what `reserve` calls, on this thread while the block runs."""
    previous = getattr(_checks, "check", None), getattr(_checks, "reserve", None)
    _checks.check, _checks.reserve = check, reserve
    try:
        yield
    finally:
        _checks.check, _checks.reserve = previous


class BigStack:
    """One long-lived thread with a big stack; jobs from other threads wait their turn or get a fresh one."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.busy = threading.Lock()
        self.thread: threading.Thread | None = None

    def run(self, fn: Callable[[], Any]) -> Any:
        if threading.current_thread() is self.thread or getattr(threading.current_thread(), "big_stack", False):
            return fn()  # already on a big stack (a server called from a handler, say)
        if not self.busy.acquire(blocking=False):
            return _fresh_thread(fn)  # another thread's job is running: do not wait behind it
        try:
            if self.thread is None or not self.thread.is_alive():
                self.thread = start_big_stack_thread(self._serve, "relay")
            done: queue.SimpleQueue = queue.SimpleQueue()
            self.jobs.put((fn, done))
            ok, value = done.get()
        finally:
            self.busy.release()
        if not ok:
            raise value
        return value

    def _serve(self) -> None:
        while True:
            fn, done = self.jobs.get()
            try:
                done.put((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                done.put((False, exc))


def start_big_stack_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread with the big stack; Relay jobs started on it run inline (servers in the fleet)."""
    old = threading.stack_size(BIG_STACK)
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.big_stack = True  # type: ignore[attr-defined]
        thread.start()
    finally:
        threading.stack_size(old)
    return thread


def _fresh_thread(fn: Callable[[], Any]) -> Any:
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            result["error"] = exc

    start_big_stack_thread(target, "relay-extra").join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


# What stopping costs per interpreted frame the error unwinds (CPython materialises each frame for
# the traceback): measured 2.2 us and 373 bytes a frame on this project's machines, and up to 4.1 us
# on a busy CI machine. The watchdogs stop a deep recursion early enough that its error still
# appears on time and within memory: the time watch counts twice the quiet machine's cost.
UNWIND_SECONDS = 5e-6
UNWIND_BYTES = 400
DEPTH_POLL = 0.02  # seconds between looks at the depth of jobs with a time limit


class Watchdog:
    """One thread that calls `on_timeout()` of each watched job whose deadline passes, or whose
    deadline is nearer than unwinding its stack (`depth()` frames deep) would take."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.depths: dict[int, Callable[[], int]] = {}
        self.cancelled: set[int] = set()
        self.ids = itertools.count()
        self.thread: threading.Thread | None = None

    def watch(self, seconds: float, on_timeout: Callable[[], None], depth: Callable[[], int] | None = None) -> int:
        with self.cond:
            ticket = next(self.ids)
            if depth is not None:
                self.depths[ticket] = depth
            heapq.heappush(self.heap, (time.monotonic() + seconds, ticket, on_timeout))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="relay-watchdog", daemon=True)
                self.thread.start()
            self.cond.notify()
            return ticket

    def cancel(self, ticket: int) -> None:
        with self.cond:
            self.cancelled.add(ticket)
            self.depths.pop(ticket, None)

    def _loop(self) -> None:
        while True:
            with self.cond:
                while self.heap and self.heap[0][1] in self.cancelled:
                    self.cancelled.discard(heapq.heappop(self.heap)[1])
                if not self.heap:
                    self.cond.wait()
                    continue
                now = time.monotonic()
                due = [job for job in self.heap if job[0] - now <= self.depths.get(job[1], _no_depth)() * UNWIND_SECONDS]
                if not due:
                    delay = self.heap[0][0] - now
                    self.cond.wait(min(delay, DEPTH_POLL) if self.depths else delay)
                    continue
                for job in due:
                    self.heap.remove(job)
                    self.depths.pop(job[1], None)
                heapq.heapify(self.heap)
            for _, _, on_timeout in due:
                on_timeout()


def _no_depth() -> int:
    return 0


class MemoryWatch:
    """One thread that reads the process's resident memory every POLL seconds while jobs are watched,
    and calls `on_exceeded()` of each job whose ceiling (`ceiling()`, in resident bytes) it passes, counting
    what unwinding its stack (`depth()` frames deep) would add."""

    POLL = 0.005

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jobs: dict[int, tuple[Callable[[], int], Callable[[], None], Callable[[], int]]] = {}
        self.ids = itertools.count()
        self.thread: threading.Thread | None = None

    def watch(self, ceiling: Callable[[], int], on_exceeded: Callable[[], None], depth: Callable[[], int] = _no_depth) -> int:
        with self.cond:
            ticket = next(self.ids)
            self.jobs[ticket] = (ceiling, on_exceeded, depth)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="relay-memory", daemon=True)
                self.thread.start()
            self.cond.notify()
            return ticket

    def cancel(self, ticket: int) -> None:
        with self.cond:
            self.jobs.pop(ticket, None)

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.jobs:
                    self.cond.wait()
                self.cond.wait(self.POLL)
                resident = resident_bytes()
                over = [ticket for ticket, (ceiling, _, depth) in self.jobs.items()
                        if resident + depth() * UNWIND_BYTES > ceiling()]
                calls = [self.jobs.pop(ticket)[1] for ticket in over]
            for on_exceeded in calls:
                on_exceeded()


def resident_bytes() -> int:
    """The process's resident memory now (Linux); elsewhere its peak so far. Read by the extension
    (`_abi.c`), the one reader compiled code's memory checks call too."""
    return _array.resident_bytes()


DEFAULT_MEMORY_LIMIT = 1 << 30
MAX_MEMORY_LIMIT = 1 << 50  # bytes (1P): a larger memory limit is refused
NO_TIME_LIMIT = 1e9  # seconds (about 31 years): a time limit this long or longer (inf too) means none
MAX_DEPTH_LIMIT = 1_000_000_000  # the largest --max-depth (Python's recursion limit is a C int)
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*\Z", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from `256M`, `2G`, `1.5G`, `64K` or a plain number of bytes (units are powers of 1024)."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (use a number with K, M, G or T, like 256M or 2G)")
    size = int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))
    if size > MAX_MEMORY_LIMIT:
        raise ValueError(f"{text.strip()} is more than the largest size, 1024T")
    return size


DEFAULT_MAX_DEPTH = 10_000  # Relay call depth a program may reach unless told otherwise


def check_max_depth(max_depth: int) -> int:
    """max_depth, when it is a depth limit Relay takes (1 to MAX_DEPTH_LIMIT); ValueError otherwise."""
    if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"the depth limit must be a whole number from 1 to {MAX_DEPTH_LIMIT:,}, got {max_depth}")
    return max_depth


def format_size(nbytes: int) -> str:
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return f"{nbytes} byte{'' if nbytes == 1 else 's'}"


def memory_limit_from_env() -> int:
    """$RELAY_MEMORY_LIMIT (a size > 0, as --memory-limit takes), or the default (1G) when it is
    unset or empty; a RelayError (a configuration error) names a bad value."""
    text = os.environ.get("RELAY_MEMORY_LIMIT", "")
    if not text.strip():
        return DEFAULT_MEMORY_LIMIT
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise RelayError(f"RELAY_MEMORY_LIMIT={text!r}: {exc}", kind="configuration error") from None
    if size <= 0:
        raise RelayError(f"RELAY_MEMORY_LIMIT={text!r}: must be a positive size, like 256M or 2G",
                         kind="configuration error")
    return size


BIG = BigStack()
WATCHDOG = Watchdog()
MEMORY_WATCH = MemoryWatch()


MAX_RECURSION_LIMIT = 1 << 30  # sys.setrecursionlimit takes a C int


def raise_recursion_limit(max_depth: int, source_size: int = 0) -> None:
    """Room for max_depth nested Relay calls, and for the front end and compiler's passes over a
    source of source_size characters (a flat chain `1 + 1 + ...` nests one level per term)."""
    needed = max(max_depth * 6 + 2000, source_size * 4 + 10_000)
    sys.setrecursionlimit(min(max(sys.getrecursionlimit(), needed), MAX_RECURSION_LIMIT))


def timed(seconds: float | None) -> TypeGuard[float]:
    """Whether a time limit of `seconds` limits anything (None, inf and NO_TIME_LIMIT or more do not)."""
    return seconds is not None and seconds < NO_TIME_LIMIT


class Limits:
    """The budgets of the job an interpreter runs, as both tiers read them.

    Compiled code gets this object, not the interpreter: its depth counter,
    the clock's deadline, the memory ceiling and the error that stops the job.
    """

    def __init__(self, max_depth: int) -> None:
        self.max_depth = check_max_depth(max_depth)
        self.depth = [0]  # nested Relay calls now; a list, shared with the generated code
        self.unwind = [0]  # Python frames besides the Relay calls' own that an error would unwind now
        self.stop_error: Exception | None = None  # set (from any thread) to stop the job with this error
        self.time_limit: float | None = None
        self.deadline_ns = 0  # time.monotonic_ns() when the time budget runs out; 0: none
        self.memory_limit: int | None = memory_limit_from_env()  # bytes a job may add to the process; None: any
        self.memory_ceiling = 0  # resident bytes the running job must stay under; 0: none
        self.memory_budget = 0  # the running job's memory limit, in bytes
        self.compiling = False  # within `uncounted`
        self.native: object | None = None  # the runtime states of its compiled calls (compiler.jit.States)

    def frames(self) -> int:
        """About how many interpreted frames stopping the job now would unwind (see Watchdog)."""
        return self.depth[0] + self.unwind[0]

    def start_clock(self, seconds: float | None) -> None:
        """Starts the job's time budget; None, or NO_TIME_LIMIT seconds and more, is none."""
        self.time_limit = seconds
        self.deadline_ns = time.monotonic_ns() + int(seconds * 1e9) if timed(seconds) else 0

    def start_memory(self, limit: int | None) -> None:
        """Sets the job's memory budget: what it may add to the process's resident memory from now."""
        self.memory_budget = limit or 0
        self.memory_ceiling = 0 if limit is None else resident_bytes() + limit

    def time_limit_message(self) -> str:
        return f"time limit of {self.time_limit:g} s exceeded"

    def memory_limit_message(self) -> str:
        return f"memory limit of {format_size(self.memory_budget)} exceeded"

    @contextmanager
    def uncounted(self) -> Iterator[None]:
        """What the block adds to the process's memory is not the job's (compiling its code, say): the
        memory watch looks away meanwhile, and the ceiling rises by it."""
        before = resident_bytes()
        self.compiling = True
        try:
            yield
        finally:
            self.compiling = False
            if self.memory_ceiling:
                self.memory_ceiling += max(0, resident_bytes() - before)

    def watched_ceiling(self) -> int:
        """The ceiling the memory watch holds the job to now (none while `uncounted`)."""
        return 1 << 62 if self.compiling else self.memory_ceiling

    def over_memory(self, nbytes: int) -> bool:
        """Whether nbytes more would not fit in the job's memory budget, with what unwinding the job's
        frames would add (as the memory watch counts it: whichever looks first, the same threshold)."""
        return bool(self.memory_ceiling) and resident_bytes() + nbytes + self.frames() * UNWIND_BYTES > self.memory_ceiling


STACK_MARGIN = 1 << 20  # bytes of native stack kept free below the deepest compiled frame
_stacks = threading.local()


def stack_limit() -> int:
    """The lowest address a compiled frame may take on this thread's stack (0: unknown, unchecked).

    The stack's bounds come from pthread_getattr_np (glibc; also the main
    thread's, from its rlimit); a margin keeps room for one frame however
    large, and for the C library calls compiled code makes.
    """
    limit = getattr(_stacks, "limit", None)
    if limit is None:
        limit = _stacks.limit = _native_stack_limit()
    return limit


def _native_stack_limit() -> int:
    try:
        libc = ctypes.CDLL(None)
        getattr_np, getstack = libc.pthread_getattr_np, libc.pthread_attr_getstack
    except (OSError, AttributeError):
        return 0
    libc.pthread_self.restype = ctypes.c_ulong
    attr = ctypes.create_string_buffer(256)  # pthread_attr_t is at most 64 bytes on the platforms glibc supports
    if getattr_np(ctypes.c_ulong(libc.pthread_self()), attr) != 0:
        return 0
    try:
        low, size = ctypes.c_void_p(), ctypes.c_size_t()
        if getstack(attr, ctypes.byref(low), ctypes.byref(size)) != 0 or not low.value:
            return 0
        return low.value + min(STACK_MARGIN, size.value // 4)
    finally:
        libc.pthread_attr_destroy(attr)


def native_stack_full() -> bool:
    """Whether this thread's native stack is down to its margin (callbacks of builtins recurse in C)."""
    limit = stack_limit()
    return limit != 0 and _array.stack_pointer() < limit

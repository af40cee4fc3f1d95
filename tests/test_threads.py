"""Compiled code runs without the GIL: several threads at once, under Python's debug allocator.

The script runs in a child process with PYTHONMALLOC=debug, which checks that every
allocation and free happens with the GIL held and catches writes past a buffer or
use after free; a crash there fails the test with the child's status.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = r'''
import gc, io, sys, threading, time
from relay_lang import _array
from relay_lang._array import Array
from relay_lang.builtin_table import ARRAY_BUSY_MESSAGE
from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_program

SRC = """
@llvm
fn work(shared: array<number>, own: array<number>, k: number) {
    let s = 0
    for r in 0..200 {
        for i in 0..len(shared) { s = s + shared[i] * k }
    }
    for i in 0..3000 { own.push(s % 1000 + i) }
    for i in 0..len(own) { own[i] = own[i] + 1 }
    let copy = array(len(own), 0)
    for i in 0..len(own) { copy[i] = own[i] * 2 }
    return s + copy[len(copy) - 1]
}
fn spoil(a) {
    a[0] = "x"
    a.push("y")
    return len(a)
}
@llvm
fn hold(a: array<number>, n: number) {
    let s = 0
    for i in 0..n { s = s + a[i % len(a)] }
    return s
}
@llvm
fn grow(a: array<number>) {
    for i in 0..100000 { a.push(1) }
    return len(a)
}
@llvm
fn fill(a: array<number>, n: number) {
    for i in 0..n { a.push(i) }
    return len(a)
}
@llvm
fn churn(n: number) {
    let c = array(4, 1)
    let s = 0
    for i in 0..n { let b = c; let d = b; s = s + d[0] }
    return c
}
"""


def interpreter():
    interp = Interpreter(out=io.StringIO(), err=io.StringIO(), tier="auto")
    run_program(SRC, "threads.relay", interp=interp)
    return interp


def rounds(k, shared):
    """A thread's work: compiled calls on the shared array and arrays of its own, with kind
    switches from interpreted code between them. Its results, as plain data."""
    interp = interpreter()
    work, spoil = interp.global_value("work"), interp.global_value("spoil")
    results = []
    for r in range(12):
        own = Array([float(k), float(r)])
        results.append(interp.call(work, (shared, own, float(k))))
        results.append(own.tolist()[-3:])
        results.append(interp.call(spoil, (own,)))  # now of the values kind
        results.append(own.tolist()[:2] + own.tolist()[-2:])
    return results


shared = Array([float(i % 97) for i in range(20000)])
alone = {k: rounds(k, shared) for k in range(4)}
together = {}
threads = [threading.Thread(target=lambda k=k: together.__setitem__(k, rounds(k, shared))) for k in range(4)]
start = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
assert together == alone, "results differ between one thread and four"
assert _array.pins(shared) == 0
print(f"4 threads x 12 rounds: identical to one thread ({time.monotonic() - start:.2f} s)")

# Another thread's compiled code holds `big`: resizing it from interpreted code (or from compiled
# code in a third thread) is a Relay error; writing an element is not; the holder's answer is intact.
big = Array([1.0] * 1000)
holder = interpreter()
answer = {}
t = threading.Thread(target=lambda: answer.setdefault("s", holder.call(holder.global_value("hold"), (big, 1e8))))
gaps = []


def ticker():
    last = time.monotonic()
    while t.is_alive():
        time.sleep(0.002)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


held_from = time.monotonic()
t.start()
tick = threading.Thread(target=ticker)
tick.start()
deadline = time.monotonic() + 30
while _array.pins(big) == 0:
    assert time.monotonic() < deadline and t.is_alive(), "the compiled call never pinned its array"
    time.sleep(0.001)
other = interpreter()
refused = []
for label, attempt in (("push", lambda: other.call(other.global_value("spoil"), (big,))),
                       ("compiled push", lambda: other.call(other.global_value("grow"), (big,)))):
    try:
        attempt()
    except RelayError as err:
        refused.append(label)
        assert ARRAY_BUSY_MESSAGE in str(err), str(err)
for name, op in (("pop", big.pop), ("append", lambda: big.append(2.0)), ("kind switch", lambda: big.__setitem__(0, "x"))):
    try:
        op()
    except RelayError as err:
        refused.append(name)
        assert ARRAY_BUSY_MESSAGE in str(err), str(err)
big[5] = 1.0  # an element write keeps the length and kind: allowed
still_held = _array.pins(big) > 0
t.join()
held = time.monotonic() - held_from
tick.join()
assert still_held, "the holder finished before the attempts: make its loop longer"
assert refused == ["push", "compiled push", "pop", "append", "kind switch"], refused
assert answer["s"] == 1e8, answer
assert len(big) == 1000 and big.kind == "numbers" and _array.pins(big) == 0
big.append(3.0)  # free again
assert len(big) == 1001
print("resizing a held array:", ", ".join(refused), "refused; the holder's answer intact")
# While the compiled call ran, this process's other threads ran too (the GIL was let go).
print(f"compiled call held the array {held:.2f} s; longest pause of a 2 ms ticker: {max(gaps) * 1000:.1f} ms")
assert max(gaps) < 0.25 < held, (max(gaps), held)

# Readers holding the GIL (tolist, copies, repr) while the array's own compiled call pushes onto it
# in place, without the GIL: each reads the length once, so none writes past what it allocated.
fill = holder.global_value("fill")
x = Array([0.0] * 400_000)
stop = False


def read():
    while not stop:
        x.tolist(), x.copy(), Array(x), repr(x) if len(x) < 1000 else None


for _ in range(3):
    while len(x) > 1:
        x.pop()  # the capacity stays: the pushes below go in place
    reader = threading.Thread(target=read)
    stop = False
    reader.start()
    for _ in range(5):
        holder.call(fill, (x, 60000.0))
    stop = True
    reader.join()
print("readers beside in-place pushes: no overrun")

# Arrays compiled code makes are private to it: gc.get_objects() in another thread cannot reach
# them (their reference counts change without the GIL), so their counts come out exact.
churn = holder.global_value("churn")
stop = False


def grab():
    while not stop:
        found = [o for o in gc.get_objects() if type(o) is Array]
        del found


grabber = threading.Thread(target=grab)
grabber.start()
made = [holder.call(churn, (2e5,)) for _ in range(20)]
stop = True
grabber.join()
assert [sys.getrefcount(m) - 1 for m in made] == [2] * 20
print("arrays made by compiled code beside gc.get_objects(): reference counts exact")

# One interpreter called from several threads at once: each call has its own runtime state, so
# only the first pins the shared array's growth; the others get the Relay error, nothing crashes.
shared_grow = Array([1.0])
errors = []


def grower():
    try:
        for _ in range(10):
            holder.call(fill, (shared_grow, 300000.0))
    except RelayError as err:
        errors.append(str(err))


growers = [threading.Thread(target=grower) for _ in range(4)]
for g in growers:
    g.start()
for g in growers:
    g.join()
assert all(ARRAY_BUSY_MESSAGE in e for e in errors), errors
assert _array.pins(shared_grow) == 0 and len(shared_grow) > 1
print(f"one interpreter, 4 threads growing one array: {len(errors)} refused, length {len(shared_grow)}")
'''


def test_compiled_code_in_several_threads_under_the_debug_allocator() -> None:
    env = dict(os.environ, PYTHONMALLOC="debug", PYTHONFAULTHANDLER="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    print(proc.stdout)
    assert proc.returncode == 0, f"status {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"

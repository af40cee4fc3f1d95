"""The interpreter tier (--tier interpret) against CPython running the same algorithms, side by side.

Run: python bench/interpreter_vs_cpython.py [--repeat N]
Prints a table of best-of-N times and the ratio interpreter / CPython.
Each workload is written twice, in Relay and in Python, step for step; the
Relay timing is taken inside the program with clock() (compilation excluded,
it is reported in its own column), and both results must agree.
"""

from __future__ import annotations

import argparse
import math
import time

from bench_machine import describe

from relay_lang.interpreter import Interpreter, run_program

FIB_RELAY = """
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
fn work() { fib(25) }
"""


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def fib_work():
    return fib(25)


LOOPS_RELAY = """
fn work() {
    let total = 0
    for i in 0..400 {
        for j in 0..400 {
            let x = i * 0.5 - j * 0.25
            if x > 0 { total += x * x } else { total -= x }
        }
    }
    return total
}
"""


def loops_work():
    total = 0.0
    for i in range(400):
        for j in range(400):
            x = i * 0.5 - j * 0.25
            if x > 0:
                total += x * x
            else:
                total -= x
    return total


ARRAYS_RELAY = """
fn work() {
    let xs = []
    for i in 0..50000 { xs.push((i * 7919) % 1000) }
    let counts = {}
    for x in xs {
        let k = str(x % 97)
        counts[k] = (counts[k] ?? 0) + 1
    }
    let best = 0
    for k in counts { if counts[k] > best { best = counts[k] } }
    let sum = 0
    for i in 0..len(xs) { sum += xs[i] }
    return [len(counts), best, sum]
}
"""


def arrays_work():
    xs = []
    for i in range(50000):
        xs.append(float((i * 7919) % 1000))
    counts = {}
    for x in xs:
        k = str(int(x % 97))
        counts[k] = counts.get(k, 0) + 1
    best = 0
    for k in counts:
        if counts[k] > best:
            best = counts[k]
    total = 0.0
    for i in range(len(xs)):
        total += xs[i]
    return [float(len(counts)), float(best), total]


NBODY_RELAY = """
fn work() {
    let x = [0, 4.84, 8.34, 12.89, 15.37]
    let y = [0, -1.16, 4.12, -15.11, -25.91]
    let v = [0, 0.606, -1.01, 0.297, 0.268]
    let w = [0, 2.81, 1.82, 0.875, 1.62]
    let m = [39.47, 0.037, 0.011, 0.0017, 0.002]
    for step in 0..2000 {
        for i in 0..5 {
            for j in i + 1..5 {
                let dx = x[i] - x[j]
                let dy = y[i] - y[j]
                let d2 = dx * dx + dy * dy + 0.01
                let mag = 0.01 / (d2 * sqrt(d2))
                v[i] -= dx * m[j] * mag
                w[i] -= dy * m[j] * mag
                v[j] += dx * m[i] * mag
                w[j] += dy * m[i] * mag
            }
        }
        for i in 0..5 {
            x[i] += 0.01 * v[i]
            y[i] += 0.01 * w[i]
        }
    }
    return x[0] + y[4]
}
"""


def nbody_work():
    x = [0.0, 4.84, 8.34, 12.89, 15.37]
    y = [0.0, -1.16, 4.12, -15.11, -25.91]
    v = [0.0, 0.606, -1.01, 0.297, 0.268]
    w = [0.0, 2.81, 1.82, 0.875, 1.62]
    m = [39.47, 0.037, 0.011, 0.0017, 0.002]
    for _step in range(2000):
        for i in range(5):
            for j in range(i + 1, 5):
                dx = x[i] - x[j]
                dy = y[i] - y[j]
                d2 = dx * dx + dy * dy + 0.01
                mag = 0.01 / (d2 * math.sqrt(d2))
                v[i] -= dx * m[j] * mag
                w[i] -= dy * m[j] * mag
                v[j] += dx * m[i] * mag
                w[j] += dy * m[i] * mag
        for i in range(5):
            x[i] += 0.01 * v[i]
            y[i] += 0.01 * w[i]
    return x[0] + y[4]


STRINGS_RELAY = """
fn work() {
    let parts = []
    for i in 0..20000 { parts.push("k" + str(i) + "=" + str(i % 13)) }
    let text = join(parts, ";")
    let fields = split(text, ";")
    let n = 0
    for f in fields { if len(f) > 7 { n += 1 } }
    return [len(text), n]
}
"""


def strings_work():
    parts = []
    for i in range(20000):
        parts.append("k" + str(i) + "=" + str(i % 13))
    text = ";".join(parts)
    fields = text.split(";")
    n = 0
    for f in fields:
        if len(f) > 7:
            n += 1
    return [float(len(text)), float(n)]


WORKLOADS = [
    ("fib(25)", FIB_RELAY, fib_work),
    ("nested loops 400x400", LOOPS_RELAY, loops_work),
    ("arrays and maps (50k)", ARRAYS_RELAY, arrays_work),
    ("n-body (2000 steps)", NBODY_RELAY, nbody_work),
    ("string building (20k)", STRINGS_RELAY, strings_work),
]

TIMED = "\nlet t0 = clock()\nlet r = work()\n[clock() - t0, r]\n"


def time_relay(source: str, repeat: int) -> tuple[float, float, object]:
    best, best_compile, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        interp = Interpreter(tier="interpret")
        start = time.perf_counter()
        interp.compile(source, "bench.relay")
        best_compile = min(best_compile, time.perf_counter() - start)
        elapsed, result = run_program(source + TIMED, "bench.relay", interp=Interpreter(tier="interpret"))  # type: ignore[misc]
        best = min(best, elapsed)
    return best, best_compile, result


def time_python(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"# interpreter vs CPython on {describe()}, best of {args.repeat}")
    print(f"{'workload':<24} {'relay ms':>10} {'compile ms':>11} {'cpython ms':>11} {'ratio':>7}")
    for name, source, py in WORKLOADS:
        relay_s, compile_s, relay_result = time_relay(source, args.repeat)
        py_s, py_result = time_python(py, args.repeat)
        same = relay_result == py_result or relay_result == float(py_result)  # type: ignore[arg-type]
        flag = "" if same else f"   RESULTS DIFFER: {relay_result} vs {py_result}"
        print(f"{name:<24} {relay_s * 1e3:>10.1f} {compile_s * 1e3:>11.2f} {py_s * 1e3:>11.1f} "
              f"{relay_s / py_s:>6.2f}x{flag}")


if __name__ == "__main__":
    main()

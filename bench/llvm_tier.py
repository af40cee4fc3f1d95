"""The LLVM tier side by side with the interpreter, CPython, C (gcc -O2) and Numba.

Run: python bench/llvm_tier.py [--repeat N] [--quick] [--only KERNEL ...] [--no-latency]
Each kernel is the same algorithm in Relay (@llvm), Python, C and Numba (the last five written
the ordinary way: ordinary_kernels). Times are best of N in one run on this machine. "llvm"
excludes compilation (a warm call); "llvm+compile" is the first call in a fresh process state
with an empty object store. Numba runs only where it is installed beside our llvmlite
(optional). Then compile latency per function (p50, p95, O2, cold store) and object-store
load time. Results are cross-checked: every column within 1e-9, the two Relay tiers exactly.
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_machine import describe

from relay_lang.compiler.cache import DirectoryStore
from relay_lang.interpreter import Interpreter, run_with_big_stack
from relay_lang.values import Array

HERE = Path(__file__).resolve().parent

RELAY = {
    "fib": """
@llvm
fn fib(n: number) -> number { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
""",
    "mandelbrot": """
@llvm
fn mandelbrot(width: number, height: number) {
    let result = []
    for y in 0..height {
        for x in 0..width {
            let c_re = (x - width / 2.0) * 4.0 / width
            let c_im = (y - height / 2.0) * 4.0 / height
            let z_re = 0.0
            let z_im = 0.0
            let iterations = 0
            for i in 0..100 {
                if z_re * z_re + z_im * z_im > 4.0 { break }
                let temp = z_re * z_re - z_im * z_im + c_re
                z_im = 2.0 * z_re * z_im + c_im
                z_re = temp
                iterations = iterations + 1
            }
            result.push(iterations)
        }
    }
    return result
}
""",
    "sum_squares": """
@llvm
fn sum_squares(data: array<number>) {
    let sum = 0.0
    for item in data { sum = sum + item * item }
    return sum
}
""",
    "nbody": """
@llvm
fn nbody(steps: number, x: array<number>, y: array<number>, z: array<number>, vx: array<number>,
         vy: array<number>, vz: array<number>, m: array<number>) {
    let n = len(x)
    let dt = 0.01
    for s in 0..steps {
        for i in 0..n {
            for j in i + 1..n {
                let dx = x[i] - x[j]
                let dy = y[i] - y[j]
                let dz = z[i] - z[j]
                let d2 = dx * dx + dy * dy + dz * dz
                let mag = dt / (d2 * sqrt(d2))
                vx[i] -= dx * m[j] * mag
                vy[i] -= dy * m[j] * mag
                vz[i] -= dz * m[j] * mag
                vx[j] += dx * m[i] * mag
                vy[j] += dy * m[i] * mag
                vz[j] += dz * m[i] * mag
            }
        }
        for i in 0..n {
            x[i] += dt * vx[i]
            y[i] += dt * vy[i]
            z[i] += dt * vz[i]
        }
    }
    let e = 0.0
    for i in 0..n { e += 0.5 * m[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i]) }
    return e
}
""",
    "spectral_norm": """
@llvm
fn a(i, j) { return 1.0 / ((i + j) * (i + j + 1) / 2 + i + 1) }
@llvm
fn mul_av(v: array<number>, out: array<number>) {
    let n = len(v)
    for i in 0..n { let s = 0.0
        for j in 0..n { s += a(i, j) * v[j] }
        out[i] = s }
}
@llvm
fn mul_atv(v: array<number>, out: array<number>) {
    let n = len(v)
    for i in 0..n { let s = 0.0
        for j in 0..n { s += a(j, i) * v[j] }
        out[i] = s }
}
@llvm
fn spectral_norm(n: number) {
    let u = array(n, 1.0)
    let v = array(n, 0.0)
    let tmp = array(n, 0.0)
    for i in 0..10 {
        mul_av(u, tmp)
        mul_atv(tmp, v)
        mul_av(v, tmp)
        mul_atv(tmp, u)
    }
    let vbv = 0.0
    let vv = 0.0
    for i in 0..n { vbv += u[i] * v[i]
        vv += v[i] * v[i] }
    return sqrt(vbv / vv)
}
""",
    "matmul": """
@llvm
fn matmul(a: array<number>, b: array<number>, n) {
    let c = array(n * n, 0)
    for i in 0..n {
        let row = i * n
        for k in 0..n {
            let aik = a[row + k]
            let brow = k * n
            for j in 0..n { c[row + j] = c[row + j] + aik * b[brow + j] }
        }
    }
    return c
}
""",
    "stencil": """
@llvm
fn stencil(src: array<number>, steps) {
    let n = len(src)
    let a = array(n, 0)
    let b = array(n, 0)
    for i in 0..n { a[i] = src[i]
        b[i] = src[i] }
    for s in 0..steps {
        for i in 1..n - 1 { b[i] = (a[i - 1] + a[i] + a[i + 1]) / 3 }
        let t = a
        a = b
        b = t
    }
    return a
}
""",
    "nbody_flat": """
@llvm
fn nbody_flat(steps: number, bodies: array<number>) {
    let b = array(len(bodies), 0)
    for i in 0..len(bodies) { b[i] = bodies[i] }
    let n = len(b) / 7
    let dt = 0.01
    for s in 0..steps {
        for i in 0..n {
            let k = i * 7
            for j in i + 1..n {
                let l = j * 7
                let dx = b[k] - b[l]
                let dy = b[k + 1] - b[l + 1]
                let dz = b[k + 2] - b[l + 2]
                let d2 = dx * dx + dy * dy + dz * dz
                let mag = dt / (d2 * sqrt(d2))
                b[k + 3] -= dx * b[l + 6] * mag
                b[k + 4] -= dy * b[l + 6] * mag
                b[k + 5] -= dz * b[l + 6] * mag
                b[l + 3] += dx * b[k + 6] * mag
                b[l + 4] += dy * b[k + 6] * mag
                b[l + 5] += dz * b[k + 6] * mag
            }
        }
        for i in 0..n {
            let k = i * 7
            b[k] += dt * b[k + 3]
            b[k + 1] += dt * b[k + 4]
            b[k + 2] += dt * b[k + 5]
        }
    }
    let e = 0.0
    for i in 0..n {
        let k = i * 7
        e += 0.5 * b[k + 6] * (b[k + 3] * b[k + 3] + b[k + 4] * b[k + 4] + b[k + 5] * b[k + 5])
    }
    return e
}
""",
    "histogram": """
@llvm
fn histogram(data: array<number>, bins) {
    let h = array(bins, 0)
    for x in data { h[floor(x * len(h))] += 1 }
    return h
}
""",
    "sieve": """
@llvm
fn sieve(n) {
    let flags = array(n, 1)
    flags[0] = 0
    flags[1] = 0
    let i = 2
    while i * i < n {
        if flags[i] == 1 {
            let j = i * i
            while j < n { flags[j] = 0
                j += i }
        }
        i += 1
    }
    let count = 0
    for f in flags { count += f }
    return count
}
""",
}


# ---------------------------------------------------------------- Python versions


def py_fib(n):
    return n if n < 2 else py_fib(n - 1) + py_fib(n - 2)


def py_mandelbrot(width, height):
    result = []
    for y in range(int(height)):
        for x in range(int(width)):
            c_re = (x - width / 2.0) * 4.0 / width
            c_im = (y - height / 2.0) * 4.0 / height
            z_re = z_im = 0.0
            iterations = 0
            for _ in range(100):
                if z_re * z_re + z_im * z_im > 4.0:
                    break
                z_re, z_im = z_re * z_re - z_im * z_im + c_re, 2.0 * z_re * z_im + c_im
                iterations += 1
            result.append(float(iterations))
    return result


def py_sum_squares(data):
    s = 0.0
    for item in data:
        s = s + item * item
    return s


def py_nbody(steps, x, y, z, vx, vy, vz, m):
    n = len(x)
    dt = 0.01
    for _ in range(int(steps)):
        for i in range(n):
            for j in range(i + 1, n):
                dx, dy, dz = x[i] - x[j], y[i] - y[j], z[i] - z[j]
                d2 = dx * dx + dy * dy + dz * dz
                mag = dt / (d2 * math.sqrt(d2))
                vx[i] -= dx * m[j] * mag
                vy[i] -= dy * m[j] * mag
                vz[i] -= dz * m[j] * mag
                vx[j] += dx * m[i] * mag
                vy[j] += dy * m[i] * mag
                vz[j] += dz * m[i] * mag
        for i in range(n):
            x[i] += dt * vx[i]
            y[i] += dt * vy[i]
            z[i] += dt * vz[i]
    return sum(0.5 * m[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i]) for i in range(n))


def py_a(i, j):
    return 1.0 / ((i + j) * (i + j + 1) / 2 + i + 1)


def py_spectral_norm(n):
    n = int(n)
    u, v, tmp = [1.0] * n, [0.0] * n, [0.0] * n

    def av(src, out, transpose):
        for i in range(n):
            out[i] = sum((py_a(j, i) if transpose else py_a(i, j)) * src[j] for j in range(n))

    for _ in range(10):
        av(u, tmp, False)
        av(tmp, v, True)
        av(v, tmp, False)
        av(tmp, u, True)
    vbv = sum(u[i] * v[i] for i in range(n))
    vv = sum(v[i] * v[i] for i in range(n))
    return math.sqrt(vbv / vv)


def py_matmul(a, b, n):
    n = int(n)
    c = [0.0] * (n * n)
    for i in range(n):
        row = i * n
        for k in range(n):
            aik, brow = a[row + k], k * n
            for j in range(n):
                c[row + j] = c[row + j] + aik * b[brow + j]
    return c


def py_stencil(src, steps):
    a, b = list(src), list(src)
    for _ in range(int(steps)):
        for i in range(1, len(a) - 1):
            b[i] = (a[i - 1] + a[i] + a[i + 1]) / 3
        a, b = b, a
    return a


def py_nbody_flat(steps, state):
    b, n, dt = list(state), len(state) // 7, 0.01
    for _ in range(int(steps)):
        for i in range(n):
            k = i * 7
            for j in range(i + 1, n):
                ll = j * 7
                dx, dy, dz = b[k] - b[ll], b[k + 1] - b[ll + 1], b[k + 2] - b[ll + 2]
                d2 = dx * dx + dy * dy + dz * dz
                mag = dt / (d2 * math.sqrt(d2))
                b[k + 3] -= dx * b[ll + 6] * mag
                b[k + 4] -= dy * b[ll + 6] * mag
                b[k + 5] -= dz * b[ll + 6] * mag
                b[ll + 3] += dx * b[k + 6] * mag
                b[ll + 4] += dy * b[k + 6] * mag
                b[ll + 5] += dz * b[k + 6] * mag
        for i in range(n):
            k = i * 7
            b[k] += dt * b[k + 3]
            b[k + 1] += dt * b[k + 4]
            b[k + 2] += dt * b[k + 5]
    return sum(0.5 * b[k + 6] * (b[k + 3] * b[k + 3] + b[k + 4] * b[k + 4] + b[k + 5] * b[k + 5])
               for k in range(0, 7 * n, 7))


def py_histogram(data, bins):
    h = [0.0] * int(bins)
    for x in data:
        h[int(math.floor(x * len(h)))] += 1
    return h


def py_sieve(n):
    n = int(n)
    flags = [1.0] * n
    flags[0] = flags[1] = 0.0
    i = 2
    while i * i < n:
        if flags[i] == 1:
            for j in range(i * i, n, i):
                flags[j] = 0.0
        i += 1
    return sum(flags)


# ---------------------------------------------------------------- C versions

C_MAIN = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
%s
int main(int argc, char **argv) {
    int repeat = atoi(argv[1]); double best = 1e9, r = 0;
    for (int k = 0; k < repeat; k++) { SETUP; double t = now(); r = RUN; t = now() - t; if (t < best) best = t; }
    printf("%%.17g %%.6f\n", r, best * 1e3);
    return 0;
}
"""

C_KERNELS = {
    "fib": ("double fib(double n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }", "", "fib(30)"),
    "mandelbrot": ("""
double mandel(double w, double h) { double total = 0;
  for (double y = 0; y < h; y++) for (double x = 0; x < w; x++) {
    double cr = (x - w / 2.0) * 4.0 / w, ci = (y - h / 2.0) * 4.0 / h, zr = 0, zi = 0; int it = 0;
    for (int i = 0; i < 100; i++) { if (zr * zr + zi * zi > 4.0) break;
      double t = zr * zr - zi * zi + cr; zi = 2.0 * zr * zi + ci; zr = t; it++; }
    total += it; }
  return total; }""", "", "mandel(400, 200)"),
    "sum_squares": ("""
static double *data; double sumsq(long n) { double s = 0; for (long i = 0; i < n; i++) s = s + data[i] * data[i]; return s; }""",
                    "if (!data) { data = malloc(sizeof(double) * 10000000); for (long i = 0; i < 10000000; i++) data[i] = i * 0.001; }",
                    "sumsq(10000000)"),
    "nbody": ("""
double x[5], y[5], z[5], vx[5], vy[5], vz[5], m[5];
void init(void) { for (int i = 0; i < 5; i++) { x[i] = i; y[i] = i * 0.5 - 1; z[i] = (i % 2) * 0.3; vx[i] = 0.01 * i; vy[i] = -0.02 * i; vz[i] = 0.005; m[i] = 1.0 + i * 0.1; } }
double nbody(int steps) { double dt = 0.01; int n = 5;
  for (int s = 0; s < steps; s++) { for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) {
      double dx = x[i] - x[j], dy = y[i] - y[j], dz = z[i] - z[j], d2 = dx * dx + dy * dy + dz * dz, mag = dt / (d2 * sqrt(d2));
      vx[i] -= dx * m[j] * mag; vy[i] -= dy * m[j] * mag; vz[i] -= dz * m[j] * mag;
      vx[j] += dx * m[i] * mag; vy[j] += dy * m[i] * mag; vz[j] += dz * m[i] * mag; }
    for (int i = 0; i < n; i++) { x[i] += dt * vx[i]; y[i] += dt * vy[i]; z[i] += dt * vz[i]; } }
  double e = 0; for (int i = 0; i < n; i++) e += 0.5 * m[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i]); return e; }""",
              "init()", "nbody(NBODY_STEPS)"),
    "spectral_norm": ("""
static double A(double i, double j) { return 1.0 / ((i + j) * (i + j + 1) / 2 + i + 1); }
static void av(int n, double *v, double *o) { for (int i = 0; i < n; i++) { double s = 0; for (int j = 0; j < n; j++) s += A(i, j) * v[j]; o[i] = s; } }
static void atv(int n, double *v, double *o) { for (int i = 0; i < n; i++) { double s = 0; for (int j = 0; j < n; j++) s += A(j, i) * v[j]; o[i] = s; } }
double spectral(int n) { double u[1000], v[1000], t[1000]; for (int i = 0; i < n; i++) { u[i] = 1; v[i] = 0; }
  for (int k = 0; k < 10; k++) { av(n, u, t); atv(n, t, v); av(n, v, t); atv(n, t, u); }
  double vbv = 0, vv = 0; for (int i = 0; i < n; i++) { vbv += u[i] * v[i]; vv += v[i] * v[i]; } return sqrt(vbv / vv); }""",
                      "", "spectral(SPECTRAL_N)"),
    "matmul": ("""
static double *A, *B, *C;
double matmul(int n) { for (long i = 0; i < (long)n * n; i++) C[i] = 0;
  for (int i = 0; i < n; i++) { long row = (long)i * n;
    for (int k = 0; k < n; k++) { double aik = A[row + k]; long brow = (long)k * n;
      for (int j = 0; j < n; j++) C[row + j] = C[row + j] + aik * B[brow + j]; } }
  double s = 0; for (long i = 0; i < (long)n * n; i++) s += C[i]; return s; }""",
               "if (!A) { long m = (long)MATMUL_N * MATMUL_N; A = malloc(8 * m); B = malloc(8 * m); C = malloc(8 * m);"
               " for (long i = 0; i < m; i++) { A[i] = (i % 7) * 0.5; B[i] = (i % 5) * 0.25 - 0.5; } }",
               "matmul(MATMUL_N)"),
    "stencil": ("""
double stencil(int n, int steps) { double *a = malloc(8 * n), *b = malloc(8 * n);
  for (int i = 0; i < n; i++) a[i] = b[i] = (i % 11) * 0.125;
  for (int s = 0; s < steps; s++) { for (int i = 1; i < n - 1; i++) b[i] = (a[i - 1] + a[i] + a[i + 1]) / 3;
    double *t = a; a = b; b = t; }
  double r = 0; for (int i = 0; i < n; i++) r += a[i]; free(a); free(b); return r; }""",
                "", "stencil(STENCIL_N, STENCIL_STEPS)"),
    "nbody_flat": ("""
double b[35];
void init(void) { for (int i = 0; i < 5; i++) { b[7*i] = i; b[7*i+1] = i * 0.5 - 1; b[7*i+2] = (i % 2) * 0.3;
  b[7*i+3] = 0.01 * i; b[7*i+4] = -0.02 * i; b[7*i+5] = 0.005; b[7*i+6] = 1.0 + i * 0.1; } }
double nbody(int steps) { double dt = 0.01; int n = 5;
  for (int s = 0; s < steps; s++) { for (int i = 0; i < n; i++) { int k = i * 7; for (int j = i + 1; j < n; j++) { int l = j * 7;
      double dx = b[k] - b[l], dy = b[k+1] - b[l+1], dz = b[k+2] - b[l+2], d2 = dx * dx + dy * dy + dz * dz, mag = dt / (d2 * sqrt(d2));
      b[k+3] -= dx * b[l+6] * mag; b[k+4] -= dy * b[l+6] * mag; b[k+5] -= dz * b[l+6] * mag;
      b[l+3] += dx * b[k+6] * mag; b[l+4] += dy * b[k+6] * mag; b[l+5] += dz * b[k+6] * mag; } }
    for (int i = 0; i < n; i++) { int k = i * 7; b[k] += dt * b[k+3]; b[k+1] += dt * b[k+4]; b[k+2] += dt * b[k+5]; } }
  double e = 0; for (int k = 0; k < 7 * n; k += 7) e += 0.5 * b[k+6] * (b[k+3] * b[k+3] + b[k+4] * b[k+4] + b[k+5] * b[k+5]); return e; }""",
                   "init()", "nbody(NBODY_STEPS)"),
    "histogram": ("""
static double *data, h[HIST_BINS];
double histogram(long m) { for (int i = 0; i < HIST_BINS; i++) h[i] = 0;
  for (long i = 0; i < m; i++) { double k = floor(data[i] * HIST_BINS); if (k < 0 || k >= HIST_BINS) abort(); h[(long)k] += 1; }
  double s = 0; for (int i = 0; i < HIST_BINS; i++) s += h[i] * i; return s; }""",
                  "if (!data) { data = malloc(8L * HIST_N); for (long i = 0; i < HIST_N; i++) data[i] = fmod(i * 0.6180339887498949, 1.0); }",
                  "histogram(HIST_N)"),
    "sieve": ("""
static double *flags;
double sieve(long n) { flags = realloc(flags, 8 * n); for (long i = 0; i < n; i++) flags[i] = 1; flags[0] = flags[1] = 0;
  for (long i = 2; i * i < n; i++) if (flags[i] == 1) for (long j = i * i; j < n; j += i) flags[j] = 0;
  double c = 0; for (long i = 0; i < n; i++) c += flags[i]; return c; }""", "", "sieve(SIEVE_N)"),
}


def c_time(name: str, repeat: int, workdir: Path, defines: dict[str, int]) -> tuple[float, float] | None:
    if shutil.which("gcc") is None:
        return None
    body, setup, run = C_KERNELS[name]
    src = workdir / f"{name}.c"
    src.write_text(C_MAIN.replace("SETUP", (setup or "(void)0").replace("%", "%%")).replace("RUN", run) % body)
    exe = workdir / name
    flags = [f"-D{k}={v}" for k, v in defines.items()]
    subprocess.run(["gcc", "-O2", *flags, "-o", str(exe), str(src), "-lm"], check=True)
    value, ms = subprocess.run([str(exe), str(repeat)], capture_output=True, text=True, check=True).stdout.split()
    return float(value), float(ms) / 1e3


# ---------------------------------------------------------------- harness


def best(fn, repeat: int) -> tuple[object, float]:
    value, fastest = None, math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        fastest = min(fastest, time.perf_counter() - start)
    return value, fastest


def relay_function(source: str, name: str, tier: str, store_dir: Path):
    """(call, compile seconds): the Relay function `name`, loaded in the given tier, as a Python callable."""
    interp = Interpreter(out=io.StringIO(), tier=tier, store=DirectoryStore(store_dir))
    start = time.perf_counter()
    interp.run(source, "bench.relay")  # @llvm functions compile as the program loads
    compile_s = time.perf_counter() - start
    fn = interp.ns[f"g_{name}"]
    return (lambda *args: run_with_big_stack(lambda: interp.guard(fn, args))), compile_s


def relay_values(args: tuple) -> tuple:
    """Arguments for a Relay function: Python lists become Relay arrays."""
    return tuple(Array(a) if isinstance(a, list) else a for a in args)


def nbody_state():
    x = [float(i) for i in range(5)]
    y = [i * 0.5 - 1 for i in range(5)]
    z = [(i % 2) * 0.3 for i in range(5)]
    vx = [0.01 * i for i in range(5)]
    vy = [-0.02 * i for i in range(5)]
    vz = [0.005] * 5
    m = [1.0 + i * 0.1 for i in range(5)]
    return [x, y, z, vx, vy, vz, m]


def kernels(quick: bool):
    steps = 20_000.0 if quick else 100_000.0
    spectral_n = 100.0 if quick else 200.0
    data = [i * 0.001 for i in range(10_000_000)]

    def result_of(v):
        return sum(v) if isinstance(v, (list, Array)) else v

    return [
        ("fib(30)", "fib", (30.0,), lambda: py_fib(30), {}, result_of),
        ("mandelbrot 400x200", "mandelbrot", (400.0, 200.0), lambda: py_mandelbrot(400.0, 200.0), {}, result_of),
        ("sum of squares 1e7", "sum_squares", (data,), lambda: py_sum_squares(data), {}, result_of),
        (f"n-body {int(steps)} steps", "nbody", None, lambda: py_nbody(steps, *nbody_state()),
         {"NBODY_STEPS": int(steps)}, result_of),
        (f"spectral-norm n={int(spectral_n)}", "spectral_norm", (spectral_n,), lambda: py_spectral_norm(spectral_n),
         {"SPECTRAL_N": int(spectral_n)}, result_of),
    ] + ordinary_kernels(quick, steps, result_of), steps


def ordinary_kernels(quick: bool, steps: float, result_of) -> list[tuple]:
    """Array code written the ordinary way (issue 21): flat row-major arrays, offsets from the
    counter, `let` bindings, data-dependent indexes, strided while loops."""
    n = 100 if quick else 200
    a = [(i % 7) * 0.5 for i in range(n * n)]
    b = [(i % 5) * 0.25 - 0.5 for i in range(n * n)]
    cells, sweeps = 20_000, (50 if quick else 200)
    src = [(i % 11) * 0.125 for i in range(cells)]
    flat = [v for body in zip(*nbody_state()) for v in body]
    hist_n, bins = (500_000 if quick else 2_000_000), 1000
    data = [math.fmod(i * 0.6180339887498949, 1.0) for i in range(hist_n)]
    sieve_n = 500_000 if quick else 2_000_000

    def weighted(v):
        return sum(k * x for k, x in enumerate(v))

    return [
        (f"matmul {n}x{n} flat", "matmul", (a, b, float(n)), lambda: py_matmul(a, b, n), {"MATMUL_N": n}, result_of),
        (f"stencil {cells}x{sweeps}", "stencil", (src, float(sweeps)), lambda: py_stencil(src, sweeps),
         {"STENCIL_N": cells, "STENCIL_STEPS": sweeps}, result_of),
        (f"n-body flat {int(steps)}", "nbody_flat", (steps, flat), lambda: py_nbody_flat(steps, flat),
         {"NBODY_STEPS": int(steps)}, result_of),
        (f"histogram {hist_n}", "histogram", (data, float(bins)), lambda: py_histogram(data, bins),
         {"HIST_N": hist_n, "HIST_BINS": bins}, weighted),
        (f"sieve {sieve_n}", "sieve", (float(sieve_n),), lambda: py_sieve(sieve_n), {"SIEVE_N": sieve_n}, result_of),
    ]


def numba_time(name: str, setup, repeat: int) -> tuple[object, float] | None:
    """Best warm time of the Numba @njit kernel (arguments converted outside the timing), or None."""
    try:
        import numba_kernels
    except ImportError:
        return None
    kernel = numba_kernels.KERNELS[name]
    kernel(*numba_kernels.arguments(setup()))  # compile
    value, fastest = None, math.inf
    for _ in range(repeat):
        args = numba_kernels.arguments(setup())
        start = time.perf_counter()
        value = kernel(*args)
        fastest = min(fastest, time.perf_counter() - start)
    return value, fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller kernels, one interpreter run")
    parser.add_argument("--only", nargs="*", help="these kernels only (names as in RELAY)")
    parser.add_argument("--no-latency", action="store_true", help="skip the compile and load latency figures")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> None:
    repeat = args.repeat
    print(f"# LLVM tier benchmark on {describe()}; best of {repeat} (interpreter: best of {1 if args.quick else 2})")
    print(f"{'kernel':<24} {'interp ms':>10} {'llvm ms':>9} {'llvm+compile':>13} {'cpython ms':>11} {'gcc -O2 ms':>11} "
          f"{'numba ms':>9} {'llvm/gcc':>9} {'llvm/numba':>11} {'interp/llvm':>12}")
    table, steps = kernels(args.quick)
    for kernel in table:
        if not args.only or kernel[1] in args.only:
            print(measure(kernel, steps, args, work), flush=True)
    if not args.no_latency:
        compile_latency(work)


def measure(kernel: tuple, steps: float, args, work: Path) -> str:
    """One row of the table: the kernel in every column, results cross-checked."""
    label, name, call_args, py, defines, result_of = kernel
    repeat = args.repeat
    source = RELAY[name]
    fresh = work / f"store-{name}"
    compiled, compile_s = relay_function(source, name, "auto", fresh)

    def setup() -> tuple:
        return (steps, *nbody_state()) if call_args is None else call_args

    fixed = relay_values(call_args) if call_args is not None else None

    def relay_setup() -> tuple:  # fresh n-body state each call (it is small); one conversion of fixed inputs
        return relay_values(setup()) if fixed is None else fixed

    first_start = time.perf_counter()
    first = compiled(*relay_setup())
    first_s = time.perf_counter() - first_start + compile_s
    value, llvm_s = best(lambda: compiled(*relay_setup()), repeat)
    interpreted, _ = relay_function(source, name, "interpret", fresh)
    ivalue, interp_s = best(lambda: interpreted(*relay_setup()), 1 if args.quick else 2)
    pvalue, py_s = best(py, 1 if args.quick else 2)
    c = c_time(name, repeat, work, defines)
    nb = numba_time(name, setup, repeat)
    checks = [result_of(first), result_of(value), result_of(ivalue), result_of(pvalue)] + ([c[0]] if c else [])
    checks += [float(result_of(list(nb[0]) if hasattr(nb[0], "__len__") else nb[0]))] if nb else []
    agree = all(abs(v - checks[0]) <= 1e-9 * max(1.0, abs(checks[0])) for v in checks)
    agree = agree and checks[0] == checks[1] == checks[2]  # the two tiers: to the last bit
    c_ms = f"{c[1] * 1e3:.1f}" if c else "n/a"
    nb_ms = f"{nb[1] * 1e3:.1f}" if nb else "n/a"
    ratio = f"{llvm_s / c[1]:.2f}x" if c else "n/a"
    nb_ratio = f"{llvm_s / nb[1]:.2f}x" if nb else "n/a"
    return (f"{label:<24} {interp_s * 1e3:>10.1f} {llvm_s * 1e3:>9.1f} {first_s * 1e3:>13.1f} {py_s * 1e3:>11.1f} "
            f"{c_ms:>11} {nb_ms:>9} {ratio:>9} {nb_ratio:>11} {interp_s / llvm_s:>11.0f}x"
            + ("" if agree else "  RESULTS DIFFER"))


LATENCY_SOURCES = [f"fn k{i}(a: array<number>, x) {{ let s = {i}.5\n for v in a {{ s += v * x + {i} }}\n"
                   f"if s > {i} {{ s = s / 2 }}\n return s }}\nk{i}([1, 2], 3)" for i in range(30)]


def run_sources(store: Path, stats: str) -> list[float]:
    """Runs every latency source on `store`; returns the cache's `stats` ("compile_seconds" or "load_seconds")."""
    seconds: list[float] = []
    for src in LATENCY_SOURCES:
        interp = Interpreter(out=io.StringIO(), store=DirectoryStore(store))
        interp.run(src, "c.relay")
        seconds.extend(getattr(interp.router.cache.stats, stats))
    return seconds


def compile_latency(work: Path) -> None:
    """Cold compiles of distinct small functions at O2, then loads of the same from the warm store
    in a fresh process (this one has them loaded already)."""
    store = work / "latency"
    cold = run_sources(store, "compile_seconds")
    script = f"import sys; sys.path.insert(0, {str(HERE)!r}); from llvm_tier import run_sources; from pathlib import Path; " \
             f"print(*run_sources(Path({str(store)!r}), 'load_seconds'))"
    warm = [float(x) for x in subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                             check=True).stdout.split()]

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3

    groups = []
    for name in RELAY:  # each kernel's @llvm functions compile as one module
        seconds = []
        for k in range(3):
            interp = Interpreter(out=io.StringIO(), tier="llvm", store=DirectoryStore(work / f"group-{name}-{k}"))
            interp.run(RELAY[name], "g.relay")
            seconds.append(sum(interp.router.cache.stats.compile_seconds))
        groups.append(f"{name} {statistics.median(seconds) * 1e3:.0f} ms")
    print(f"compile of each kernel's group, O2, cold store (median of 3): {', '.join(groups)}")
    print(f"compile latency per function, O2, cold store ({len(cold)} functions): "
          f"p50 {statistics.median(cold) * 1e3:.1f} ms, p95 {pct(cold, 0.95):.1f} ms")
    print(f"object-store load in a fresh process ({len(warm)} functions): p50 {statistics.median(warm) * 1e3:.2f} ms, "
          f"p95 {pct(warm, 0.95):.2f} ms")

if __name__ == "__main__":
    main()

"""The benchmark kernels for Numba @njit (optional: `pip install -e '.[bench]'`)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=False)
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


@njit(cache=False)
def mandelbrot(width, height):
    result = np.empty(int(width) * int(height))
    k = 0
    for y in range(int(height)):
        for x in range(int(width)):
            c_re = (x - width / 2.0) * 4.0 / width
            c_im = (y - height / 2.0) * 4.0 / height
            z_re = 0.0
            z_im = 0.0
            iterations = 0
            for _ in range(100):
                if z_re * z_re + z_im * z_im > 4.0:
                    break
                temp = z_re * z_re - z_im * z_im + c_re
                z_im = 2.0 * z_re * z_im + c_im
                z_re = temp
                iterations += 1
            result[k] = iterations
            k += 1
    return result


@njit(cache=False)
def sum_squares(data):
    s = 0.0
    for item in data:
        s = s + item * item
    return s


@njit(cache=False)
def nbody(steps, x, y, z, vx, vy, vz, m):
    n = len(x)
    dt = 0.01
    for _ in range(int(steps)):
        for i in range(n):
            for j in range(i + 1, n):
                dx = x[i] - x[j]
                dy = y[i] - y[j]
                dz = z[i] - z[j]
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
    e = 0.0
    for i in range(n):
        e += 0.5 * m[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i])
    return e


@njit(cache=False)
def _a(i, j):
    return 1.0 / ((i + j) * (i + j + 1) / 2 + i + 1)


@njit(cache=False)
def _av(v, out, transpose):
    n = len(v)
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += (_a(j, i) if transpose else _a(i, j)) * v[j]
        out[i] = s


@njit(cache=False)
def spectral_norm(n):
    n = int(n)
    u = np.ones(n)
    v = np.zeros(n)
    tmp = np.zeros(n)
    for _ in range(10):
        _av(u, tmp, False)
        _av(tmp, v, True)
        _av(v, tmp, False)
        _av(tmp, u, True)
    vbv = 0.0
    vv = 0.0
    for i in range(n):
        vbv += u[i] * v[i]
        vv += v[i] * v[i]
    return math.sqrt(vbv / vv)


@njit(cache=False)
def matmul(a, b, n):
    n = int(n)
    c = np.zeros(n * n)
    for i in range(n):
        row = i * n
        for k in range(n):
            aik = a[row + k]
            brow = k * n
            for j in range(n):
                c[row + j] = c[row + j] + aik * b[brow + j]
    return c


@njit(cache=False)
def stencil(src, steps):
    a = src.copy()
    b = src.copy()
    for _ in range(int(steps)):
        for i in range(1, len(a) - 1):
            b[i] = (a[i - 1] + a[i] + a[i + 1]) / 3
        a, b = b, a
    return a


@njit(cache=False)
def nbody_flat(steps, state):
    b = state.copy()
    n = len(b) // 7
    dt = 0.01
    for _ in range(int(steps)):
        for i in range(n):
            k = i * 7
            for j in range(i + 1, n):
                ll = j * 7
                dx = b[k] - b[ll]
                dy = b[k + 1] - b[ll + 1]
                dz = b[k + 2] - b[ll + 2]
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
    e = 0.0
    for i in range(n):
        k = i * 7
        e += 0.5 * b[k + 6] * (b[k + 3] * b[k + 3] + b[k + 4] * b[k + 4] + b[k + 5] * b[k + 5])
    return e


@njit(cache=False, boundscheck=True)  # a data-dependent index: Numba checks it too
def histogram(data, bins):
    h = np.zeros(int(bins))
    for x in data:
        h[int(math.floor(x * len(h)))] += 1
    return h


@njit(cache=False)
def sieve(n):
    n = int(n)
    flags = np.ones(n)
    flags[0] = 0
    flags[1] = 0
    i = 2
    while i * i < n:
        if flags[i] == 1:
            j = i * i
            while j < n:
                flags[j] = 0
                j += i
        i += 1
    count = 0.0
    for f in flags:
        count += f
    return count


KERNELS = {"fib": fib, "mandelbrot": mandelbrot, "sum_squares": sum_squares, "nbody": nbody,
           "spectral_norm": spectral_norm, "matmul": matmul, "stencil": stencil, "nbody_flat": nbody_flat,
           "histogram": histogram, "sieve": sieve}


def arguments(args: tuple) -> tuple:
    """Relay/Python arguments as Numba takes them: lists become float64 arrays."""
    return tuple(np.array(a, dtype=np.float64) if isinstance(a, list) else a for a in args)

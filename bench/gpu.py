"""@gpu kernels on an NVIDIA GPU beside the same kernels in CUDA C (nvcc) and CuPy (issue 22, item 7).

Run: python bench/gpu.py [--quick] [--repeat N]

First, always: the Relay kernels (saxpy, mandelbrot, all-pairs n-body) are
compiled to PTX in a child process and assembled by the wheel's ptxas for
sm_90. Without a GPU (no cuda-bindings, no driver, no device) it says so and
exits 0 there. With one: each kernel runs as Relay @gpu code (PTX loaded
through cuda.bindings), CUDA C (nvcc -O3 -fmad=false, when nvcc is found)
and CuPy (where installed; n-body has none); every result is checked against
the Relay CPU tier (exactly for Relay and CUDA C; CuPy's may contract to FMA,
its differences are counted), and kernel times (best of N, device events,
arrays already on the device) and ratios are printed, then the launch time
of a 1-element kernel and the first compile. Needs numpy (CuPy's).
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_machine import describe

from relay_lang.compiler.gpu import GpuUnavailable, program_ptx, ptxas_path
from relay_lang.compiler.gpu_runtime import Device, device_status
from relay_lang.interpreter import Interpreter, run_with_big_stack
from relay_lang.values import Array

RELAY = """
@gpu
fn saxpy(a, x: array, y: array) {
    for i in 0..len(x) {
        y[i] = a * x[i] + y[i]
    }
}

@gpu
fn mandelbrot(out: array, w, h, iters) {
    let scale = 3 / w
    for p in 0..w * h {
        let row = floor(p / w)
        let cx = (p - row * w) * scale - 2
        let cy = row * scale - 1.5
        let x = 0
        let y = 0
        let k = 0
        while k < iters && x * x + y * y <= 4 {
            let t = x * x - y * y + cx
            y = 2 * x * y + cy
            x = t
            k += 1
        }
        out[p] = k
    }
}

@gpu
fn nbody(px: array, py: array, pz: array, m: array, ax: array, ay: array, az: array) {
    let n = len(px)
    for i in 0..n {
        let sx = 0
        let sy = 0
        let sz = 0
        for j in 0..n {
            let dx = px[j] - px[i]
            let dy = py[j] - py[i]
            let dz = pz[j] - pz[i]
            let r2 = dx * dx + dy * dy + dz * dz + 0.01
            let s = m[j] / (r2 * sqrt(r2))
            sx += s * dx
            sy += s * dy
            sz += s * dz
        }
        ax[i] = sx
        ay[i] = sy
        az[i] = sz
    }
}
"""

CUDA_C = r"""
#include <math.h>
#define GRID_STRIDE(k, n) for (long k = blockIdx.x * (long)blockDim.x + threadIdx.x; k < (n); k += (long)blockDim.x * gridDim.x)
extern "C" __global__ void saxpy(double a, const double *x, long nx, double *y, long ny, long *err) {
    GRID_STRIDE(i, nx) y[i] = a * x[i] + y[i];
}
extern "C" __global__ void mandelbrot(double *out, long n, double w, double h, double iters, long *err) {
    double scale = 3 / w;
    GRID_STRIDE(k, (long)(w * h)) {
        double p = (double)k, row = floor(p / w), cx = (p - row * w) * scale - 2, cy = row * scale - 1.5;
        double x = 0, y = 0, it = 0;
        while (it < iters && x * x + y * y <= 4) { double t = x * x - y * y + cx; y = 2 * x * y + cy; x = t; it += 1; }
        out[k] = it;
    }
}
extern "C" __global__ void nbody(const double *px, long n, const double *py, long n1, const double *pz, long n2,
                                 const double *m, long n3, double *ax, long n4, double *ay, long n5, double *az, long n6,
                                 long *err) {
    GRID_STRIDE(i, n) {
        double sx = 0, sy = 0, sz = 0;
        for (long j = 0; j < n; j++) {
            double dx = px[j] - px[i], dy = py[j] - py[i], dz = pz[j] - pz[i];
            double r2 = dx * dx + dy * dy + dz * dz + 0.01;
            double s = m[j] / (r2 * sqrt(r2));
            sx += s * dx; sy += s * dy; sz += s * dz;
        }
        ax[i] = sx; ay[i] = sy; az[i] = sz;
    }
}
"""

CUPY_SAXPY = ("float64 a, float64 x", "float64 y", "y = a * x + y")
CUPY_MANDELBROT = ("float64 p, float64 w, float64 iters", "float64 out", """
    double scale = 3 / w, row = floor(p / w), cx = (p - row * w) * scale - 2, cy = row * scale - 1.5;
    double x = 0, y = 0, it = 0;
    while (it < iters && x * x + y * y <= 4) { double t = x * x - y * y + cx; y = 2 * x * y + cy; x = t; it += 1; }
    out = it;""")


def sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"saxpy": 1 << 20, "mandelbrot": 1024, "nbody": 4096, "iters": 256}
    return {"saxpy": 1 << 27, "mandelbrot": 8192, "nbody": 32768, "iters": 256}


def compile_in_child() -> dict[str, str]:
    """The Relay kernels' PTX, compiled in a child process (an LLVM abort must not end this one)."""
    code = "import json, sys\nfrom relay_lang.compiler.gpu import program_ptx\nprint(json.dumps(program_ptx(sys.stdin.read())))"
    result = subprocess.run([sys.executable, "-c", code], input=RELAY, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        sys.exit(f"compiling the @gpu kernels to PTX failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def assemble(ptx: dict[str, str], work: Path) -> None:
    """ptxas for sm_90 on every kernel (no GPU needed)."""
    try:
        ptxas = str(ptxas_path())
    except GpuUnavailable as why:
        print(f"ptxas: skipped ({why})")
        return
    for name, text in ptx.items():
        src = work / f"{name}.ptx"
        src.write_text(text)
        result = subprocess.run([ptxas, "-arch=sm_90", str(src), "-o", str(work / f"{name}.cubin")], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"ptxas rejected {name}:\n{result.stderr}")
        print(f"PTX {name}: {len(text):,} characters, assembled by ptxas for sm_90, fma: {'fma' in text}")


# ---------------------------------------------------------------- inputs and the CPU tier


def inputs(size: dict[str, int]):
    import numpy as np
    rng = np.random.default_rng(22)
    n = size["nbody"]
    return {
        "saxpy": (2.5, rng.random(size["saxpy"]), rng.random(size["saxpy"])),
        "mandelbrot": (np.zeros(size["mandelbrot"] ** 2), float(size["mandelbrot"]), float(size["mandelbrot"]),
                       float(size["iters"])),
        "nbody": (*(rng.random(n) for _ in range(3)), 1 + rng.random(n), np.zeros(n), np.zeros(n), np.zeros(n)),
    }


def cpu_results(data: dict) -> dict:
    """Each kernel run by the Relay CPU tier (@gpu on the CPU: the LLVM tier), as numpy arrays, with its time."""
    import numpy as np
    interp = Interpreter(out=io.StringIO())
    interp.run(RELAY, "gpu_bench.relay")
    found = {}
    for name, args in data.items():
        relay_args = [Array(a.tolist()) if isinstance(a, np.ndarray) else a for a in args]
        fn = interp.ns[f"g_{name}"]
        start = time.perf_counter()
        run_with_big_stack(lambda fn=fn, relay_args=relay_args: interp.guard(fn, tuple(relay_args)))
        seconds = time.perf_counter() - start
        found[name] = ([np.fromiter(a, float, len(a)) for a in relay_args if isinstance(a, Array)], seconds)
        print(f"CPU tier {name}: {seconds:.2f} s")
    return found


# ---------------------------------------------------------------- the GPU


class Launcher:
    """Kernels with Relay's calling convention (arrays as pointer and length, then the error record)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.err = device.upload(ctypes.addressof((ctypes.c_int64 * 4)()), 32)

    def arguments(self, args: tuple) -> tuple[list, list[tuple[int, object]]]:
        import numpy as np
        values: list = []
        buffers: list[tuple[int, object]] = []
        for a in args:
            if isinstance(a, np.ndarray):
                ptr = self.device.upload(a.ctypes.data, a.nbytes)
                buffers.append((ptr, a))
                values += [ctypes.c_uint64(ptr), ctypes.c_int64(len(a))]
            else:
                values.append(ctypes.c_double(a))
        return values + [ctypes.c_uint64(self.err)], buffers

    def run(self, function: object, iterations: int, args: tuple, repeat: int) -> tuple[list, float]:
        """(the arrays after one launch on fresh inputs, best kernel milliseconds of `repeat` more)."""
        values, buffers = self.arguments(args)
        self.device.launch(function, iterations, values)
        results = []
        for ptr, host in buffers:
            out = host.copy()  # type: ignore[attr-defined]
            self.device.download(ptr, out.ctypes.data, out.nbytes)
            results.append(out)
        best = min(self.device.timed(lambda: self.device.launch(function, iterations, values, wait=False))
                   for _ in range(repeat))
        for ptr, _ in buffers:
            self.device.free(ptr)
        return results, best


def cuda_c_ptx(work: Path) -> str | None:
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if nvcc is None:
        return None
    src = work / "kernels.cu"
    src.write_text(CUDA_C)
    subprocess.run([nvcc, "-ptx", "-O3", "-arch=sm_90", "-fmad=false", str(src), "-o", str(work / "kernels.ptx")], check=True)
    return (work / "kernels.ptx").read_text()


def cupy_time(name: str, args: tuple, repeat: int) -> tuple[list, float] | None:
    try:
        import cupy as cp
    except ImportError:
        return None
    if name == "saxpy":
        kernel = cp.ElementwiseKernel(*CUPY_SAXPY, "relay_saxpy")
        a, x, y = args[0], cp.asarray(args[1]), cp.asarray(args[2])
        kernel(a, x, y)
        out = [cp.asnumpy(y)]
        run = lambda: kernel(a, x, y)  # noqa: E731
    elif name == "mandelbrot":
        kernel = cp.ElementwiseKernel(*CUPY_MANDELBROT, "relay_mandelbrot")
        p = cp.arange(len(args[0]), dtype=cp.float64)
        res = cp.zeros_like(p)
        kernel(p, args[1], args[3], res)
        out = [cp.asnumpy(res)]
        run = lambda: kernel(p, args[1], args[3], res)  # noqa: E731
    else:
        return None
    best = float("inf")
    for _ in range(repeat):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, stop))
    return out, best


ITERATIONS = {"saxpy": lambda s: s["saxpy"], "mandelbrot": lambda s: s["mandelbrot"] ** 2, "nbody": lambda s: s["nbody"]}


def check(name: str, got: list, want: list, exact: bool) -> str:
    import numpy as np
    if exact:
        return "exact" if all(np.array_equal(g, w, equal_nan=True) for g, w in zip(got, want)) else "DIFFERS"
    differ = sum(int(np.count_nonzero(g != w)) for g, w in zip(got, want))
    return "exact" if differ == 0 else f"{differ:,} elements differ"


def ratio(ms: float, other: float | None) -> str:
    return f"{ms / other:.2f}x" if other else "—"


def on_gpu(ptx: dict[str, str], size: dict[str, int], repeat: int, work: Path) -> None:
    device = Device()
    launcher = Launcher(device)
    data = inputs(size)
    want = cpu_results(data)
    cuda_ptx = cuda_c_ptx(work)
    print(f"\n{'kernel':<12} {'relay ms':>10} {'CUDA C ms':>10} {'CuPy ms':>10} {'relay/C':>8} {'relay/CuPy':>10}  checks")
    failed = False
    for name, args in data.items():
        iterations = ITERATIONS[name](size)
        relay_out, relay_ms = launcher.run(device.load(ptx[name], f"relay_gpu_{name}"), iterations, args, repeat)
        row = [check(name, relay_out, want[name][0], True)]
        c_ms = cupy_ms = None
        if cuda_ptx is not None:
            c_out, c_ms = launcher.run(device.load(cuda_ptx, name), iterations, args, repeat)
            row.append(f"CUDA C {check(name, c_out, want[name][0], True)}")
        cupy = cupy_time(name, args, repeat)
        if cupy is not None:
            cupy_ms = cupy[1]
            row.append(f"CuPy {check(name, cupy[0], want[name][0][-1:] if name == 'saxpy' else want[name][0], False)}")
        failed |= row[0] != "exact"
        print(f"{name:<12} {relay_ms:>10.3f} {c_ms or float('nan'):>10.3f} {cupy_ms or float('nan'):>10.3f} "
              f"{ratio(relay_ms, c_ms):>8} {ratio(relay_ms, cupy_ms):>10}  relay {', '.join(row)}")
    latency(device, ptx)
    if failed:
        sys.exit("a Relay @gpu result differs from the CPU tier's")


def latency(device: Device, ptx: dict[str, str]) -> None:
    """A 1-element saxpy launched on arrays already on the device (wall clock, best of 200), and the first compile."""
    import numpy as np
    launcher = Launcher(device)
    values, buffers = launcher.arguments((1.0, np.ones(1), np.ones(1)))
    function = device.load(ptx["saxpy"], "relay_gpu_saxpy")
    best = float("inf")
    for _ in range(200):
        start = time.perf_counter()
        device.launch(function, 1, values)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    fresh = program_ptx(RELAY.replace("fn saxpy", "fn saxpy2").split("@gpu\nfn mandelbrot")[0])
    compiled = time.perf_counter() - start
    device.load(fresh["saxpy2"], "relay_gpu_saxpy2")
    print(f"\n1-element launch (sync included): {best * 1e6:.1f} us; first compile of saxpy to PTX: {compiled * 1e3:.0f} ms, "
          f"with the driver's load: {(time.perf_counter() - start) * 1e3:.0f} ms")
    for ptr, _ in buffers:
        device.free(ptr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small problems (a smoke test)")
    parser.add_argument("--repeat", type=int, default=20, help="timed launches per kernel (best is printed)")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    ptx = compile_in_child()
    assert set(ptx) == {"saxpy", "mandelbrot", "nbody"}, sorted(ptx)
    with tempfile.TemporaryDirectory() as tmp:
        assemble(ptx, Path(tmp))
        ok, what = device_status()
        if not ok:
            print(f"no GPU here ({what}): the PTX compiles and assembles; nothing was timed")
            return
        print(f"GPU: {what}")
        on_gpu(ptx, sizes(args.quick), args.repeat, Path(tmp))


if __name__ == "__main__":
    main()

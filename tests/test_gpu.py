"""@gpu functions: the CPU path gives the other tiers' results, the PTX assembles, refusals are placed.

PTX is compiled in a child process (the NVPTX backend aborts the process on
what it cannot select) and assembled by the ptxas of the nvidia-cuda-nvcc-cu12
wheel for sm_90; no GPU is needed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT, both, relay_cli, run_relay
from relay_lang.compiler.gpu import GpuUnavailable, program_kernels, ptxas_path
from relay_lang.errors import RelayError

SAXPY = """
@gpu
fn saxpy(a, x: array, y: array) {
    for i in 0..len(x) {
        y[i] = a * x[i] + y[i]
    }
}
"""
MANDELBROT = """
fn inside(x, y) { x * x + y * y <= 4 }

@gpu
fn mandelbrot(out: array, w, h, iters) {
    let scale = 3 / w
    for p in 0..w * h {
        let cx = (p % w) * scale - 2
        let cy = floor(p / w) * scale - 1.5
        let x = 0
        let y = 0
        let k = 0
        while k < iters && inside(x, y) {
            let t = x * x - y * y + cx
            y = 2 * x * y + cy
            x = t
            k += 1
        }
        out[p] = k
    }
}
"""
NBODY = """
@gpu
fn accelerations(px: array, py: array, pz: array, m: array, ax: array, ay: array, az: array) {
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
MATH = """
fn wave(v) { if v > 0.5 { return sin(v) * cos(v) } 1 - v % 0.25 }

@gpu
fn math(x: array, out: array, flag: bool) {
    for i in 0..len(x) {
        let v = x[i]
        if flag || v > 1 { out[i] = pow(v, 1.5) + exp(-v) + log(v + 1) + atan2(v, 2) + tan(v) + wave(v) }
        else { out[i] = min(v, 3, 0 / 0) + max(-v, 0) + round(v) + abs(v) + ceil(v) + atan(v) }
    }
}
"""
CONTROL = """
fn collatz(v) {
    let n = v
    let steps = 0
    while n != 1 { if n % 2 == 0 { n = n / 2 } else { n = 3 * n + 1 }
        steps += 1
        if steps > 1000 { return -1 } }
    steps
}

@gpu
fn control(x: array, out: array, skip: bool, limit) {
    let first = x[0]
    let half = limit / 2
    for i in 0..len(x) {
        if skip && i % 3 == 0 { continue }
        let found = 0
        for j in 1..limit {
            if j > half { break }
            if j % 2 == 1 { continue }
            found += j * first
        }
        out[i] = collatz(x[i]) + found
    }
}
"""
KERNELS = {"saxpy": SAXPY, "mandelbrot": MANDELBROT, "accelerations": NBODY, "math": MATH, "control": CONTROL}
USES = {
    "saxpy": "let x = array(1000, 0)\nlet y = array(1000, 0.25)\nfor i in 0..1000 { x[i] = i / 7 }\n"
             "saxpy(1 / 3, x, y)\nprint(y[0], y[1], y[999])",
    "mandelbrot": "let out = array(48 * 32, 0)\nmandelbrot(out, 48, 32, 60)\nlet s = 0\nfor v in out { s += v }\n"
                  "print(s, out[700])",
    "accelerations": "let n = 40\nlet px = array(n, 0)\nlet py = array(n, 0)\nlet pz = array(n, 0)\nlet m = array(n, 1)\n"
                     "for i in 0..n { px[i] = sin(i); py[i] = cos(i * 3); pz[i] = i / n; m[i] = 1 + i % 3 }\n"
                     "let ax = array(n, 0)\nlet ay = array(n, 0)\nlet az = array(n, 0)\n"
                     "accelerations(px, py, pz, m, ax, ay, az)\nprint(ax, ay[7], az[39])",
    "control": "let x = [3, 7, 27, 1, 6, 9, 97]\nlet out = array(7, 0)\ncontrol(x, out, true, 9)\nprint(out)\n"
               "control(x, out, false, 20)\nprint(out)",
    "math": "let x = [0.1, 0.75, 2.5, 0, 7.25]\nlet out = array(5, 0)\nmath(x, out, false)\nprint(out)\n"
            "math(x, out, true)\nprint(out)",
}


@pytest.mark.parametrize("name", KERNELS)
def test_cpu_path_equals_the_other_tiers(name: str) -> None:
    """@gpu runs on the CPU through the LLVM tier here: bit for bit the interpreter's and @llvm's results."""
    src = KERNELS[name] + USES[name]
    interpreted, compiled = both(src)
    gpu_path = run_relay(src)[0]
    as_llvm = run_relay(src.replace("@gpu", "@llvm"))[0]
    assert "ERROR" not in interpreted
    assert interpreted == compiled == gpu_path == as_llvm


def test_errors_on_the_cpu_path_are_the_interpreters() -> None:
    src = SAXPY + "saxpy(2, [1, 2, 3], [1, 2])"
    interpreted, compiled = both(src)
    assert interpreted.startswith("ERROR") and "index 2 out of range for array of length 2" in interpreted
    assert interpreted == compiled
    with pytest.raises(RelayError) as info:
        run_relay(src)
    assert f"ERROR {info.value}" == interpreted


def test_explain_says_which_device_ran_it_and_why(tmp_path) -> None:
    path = tmp_path / "gpu_explain.relay"
    path.write_text(SAXPY + USES["saxpy"])
    result = relay_cli("run", "--explain", str(path))
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() + result.stdout.splitlines() if "saxpy:" in x)
    assert re.search(r"saxpy: llvm \(@gpu, .*; device: CPU \(.+\)\)", line), line


# ---------------------------------------------------------------- PTX

def compile_ptx(src: str) -> dict[str, str]:
    """The program's PTX by kernel, compiled in a child process."""
    code = ("import json, sys\nfrom relay_lang.compiler.gpu import program_ptx\n"
            "print(json.dumps(program_ptx(sys.stdin.read(), 'k.relay')))")
    result = subprocess.run([sys.executable, "-c", code], input=src, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, f"the PTX compile failed (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(result.stdout)


def ptxas() -> str:
    try:
        path = ptxas_path()
    except GpuUnavailable as why:
        pytest.skip(str(why))
    return str(path)


@pytest.fixture(scope="module")
def ptx_of() -> dict[str, str]:
    ptxas()
    found = compile_ptx("\n".join(KERNELS.values()))
    assert set(found) == set(KERNELS)
    return found


@pytest.mark.parametrize("name", KERNELS)
def test_ptx_assembles_for_sm_90(name: str, ptx_of: dict[str, str], tmp_path) -> None:
    text = ptx_of[name]
    assert ".target sm_90" in text and f".visible .entry relay_gpu_{name}(" in text
    assert ".extern" not in text, "unresolved calls: a libdevice function was not linked"
    src = tmp_path / f"{name}.ptx"
    src.write_text(text)
    result = subprocess.run([ptxas(), "-arch=sm_90", str(src), "-o", str(tmp_path / f"{name}.cubin")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["saxpy", "mandelbrot", "accelerations"])
def test_no_fma_where_the_source_has_none(name: str, ptx_of: dict[str, str]) -> None:
    assert "fma" not in ptx_of[name]
    assert re.search(r"\b(add|mul)\.rn\.f64", ptx_of[name])  # rounded, never contracted by ptxas


def test_math_goes_through_libdevice(ptx_of: dict[str, str]) -> None:
    """No llvm.sin/cos/pow (the backend aborts on them for doubles) nor frem: libdevice's __nv_* functions,
    linked and inlined into the kernel."""
    kernel, text = program_kernels(MATH)["math"]
    assert kernel == "relay_gpu_math"
    assert not re.search(r"llvm\.(sin|cos|pow|exp|log)|frem", text)
    for name in ("sin", "cos", "pow", "exp", "log", "atan2", "tan", "atan", "fmod", "round", "ceil", "fabs"):
        assert f'@"__nv_{name}"(' in text
    assert "__nv_" not in ptx_of["math"].split(".visible .entry")[1]


# ---------------------------------------------------------------- refusals

REFUSALS = [
    ("@gpu\nfn f(x: array) {\n    for i in 0..len(x) - 1 {\n        x[i + 1] = x[i]\n    }\n}", "4:13",
     "written at another index than the iteration's own"),
    ("@gpu\nfn f(x: array) {\n    for i in 0..len(x) {\n        x.push(1)\n    }\n}", "4:11", "push changes an array's length"),
    ("@gpu\nfn f(x: array) {\n    let s = 0\n    for i in 0..len(x) {\n        s += x[i]\n    }\n}", "5:11",
     "'s' is declared outside the loop"),
    ("fn g(v) { str(v) }\n@gpu\nfn f(x: array) {\n    for i in 0..len(x) {\n        x[i] = g(x[i])\n    }\n}", "5:16",
     "g cannot be compiled by the LLVM tier"),
    ("@gpu\nfn f(x: array, y: array) {\n    for i in 1..len(x) {\n        x[i] = x[i - 1] + y[i]\n    }\n}", "4:17",
     "'x' is written in the loop, so it is read only at [i]"),
    ("@gpu\nfn f(x: array) {\n    for i in 0..len(x) {\n        if x[i] > 0 { break }\n    }\n}", "4:23",
     "break out of the loop"),
    ("@gpu\nfn f(x: array) {\n    let n = 0\n}", "2:1", "a @gpu function is a counted loop"),
    ("@gpu\n@fastmath\nfn f(x: array) {\n    for i in 0..len(x) { x[i] = 1 }\n}", "2:1", "@gpu and @fastmath contradict"),
]


@pytest.mark.parametrize("src,where,why", REFUSALS)
def test_refusals_are_placed_relay_errors(src: str, where: str, why: str) -> None:
    for tier in ("auto", "interpret"):
        with pytest.raises(RelayError) as info:
            run_relay(src, tier=tier)
        assert why in info.value.message
        assert str(info.value).startswith(f"test.relay:{where}: "), str(info.value)

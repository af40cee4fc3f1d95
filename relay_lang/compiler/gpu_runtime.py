"""The CUDA driver, through `cuda.bindings.driver` (the optional extra `relay-lang[gpu]`).

`device_status()` says once per process whether `@gpu` code can run on a
GPU here, and if not, why (`cuInit` raises where no driver is installed; it
does not return an error code). `Device` loads PTX (`cuModuleLoadData`),
keeps arrays on the device and launches kernels (`cuLaunchKernel`): what
bench/gpu.py uses. No GPU run has been made with it yet (issue 22).
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

BLOCK = 256  # threads per block; the grid covers the iterations, capped (the kernel strides)
MAX_BLOCKS = 65_535


class DriverError(Exception):
    """A CUDA driver call failed."""


@cache
def device_status() -> tuple[bool, str]:
    """(True, the device's name) when a CUDA device answers; else (False, why not, in words)."""
    try:
        from cuda.bindings import driver
    except ImportError:
        return False, "cuda-bindings is not installed (pip install 'relay-lang[gpu]')"
    try:
        _check(driver.cuInit(0))
        count = _check(driver.cuDeviceGetCount())
    except Exception as exc:  # noqa: BLE001 - cuInit raises where no driver is installed
        return False, f"no CUDA driver ({type(exc).__name__})"
    if not count:
        return False, "no CUDA device"
    name = _check(driver.cuDeviceGetName(64, 0))
    return True, bytes(name).split(b"\0")[0].decode()


def _check(result: Any) -> Any:
    """The value of a driver call's (error, value...) tuple; DriverError unless it succeeded."""
    from cuda.bindings import driver
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        raise DriverError(f"CUDA driver: {err!r}")
    return values[0] if len(values) == 1 else tuple(values) if values else None


class Device:
    """The first GPU's primary context: modules, device buffers, launches, timing."""

    def __init__(self) -> None:
        from cuda.bindings import driver
        self.driver = driver
        _check(driver.cuInit(0))
        self.dev = _check(driver.cuDeviceGet(0))
        self.ctx = _check(driver.cuDevicePrimaryCtxRetain(self.dev))
        _check(driver.cuCtxSetCurrent(self.ctx))

    def load(self, ptx: str, kernel: str) -> Any:
        module = _check(self.driver.cuModuleLoadData(ptx.encode() + b"\0"))
        return _check(self.driver.cuModuleGetFunction(module, kernel.encode()))

    def upload(self, address: int, nbytes: int) -> int:
        """A device copy of nbytes of host memory at address; its device address."""
        ptr = _check(self.driver.cuMemAlloc(max(8, nbytes)))
        if nbytes:
            _check(self.driver.cuMemcpyHtoD(ptr, address, nbytes))
        return int(ptr)

    def download(self, ptr: int, address: int, nbytes: int) -> None:
        if nbytes:
            _check(self.driver.cuMemcpyDtoH(address, ptr, nbytes))

    def free(self, ptr: int) -> None:
        _check(self.driver.cuMemFree(ptr))

    def launch(self, function: Any, iterations: int, args: list[ctypes._SimpleCData], wait: bool = True) -> None:
        """One launch covering `iterations` (grid-stride beyond MAX_BLOCKS blocks); waits for it unless told not to."""
        blocks = max(1, min(MAX_BLOCKS, -(-iterations // BLOCK)))
        pointers = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        _check(self.driver.cuLaunchKernel(function, blocks, 1, 1, BLOCK, 1, 1, 0, 0, ctypes.addressof(pointers), 0))
        if wait:
            _check(self.driver.cuCtxSynchronize())

    def timed(self, run: Any) -> float:
        """Milliseconds between two events around run(), on the device's clock."""
        start, stop = _check(self.driver.cuEventCreate(0)), _check(self.driver.cuEventCreate(0))
        _check(self.driver.cuEventRecord(start, 0))
        run()
        _check(self.driver.cuEventRecord(stop, 0))
        _check(self.driver.cuEventSynchronize(stop))
        return float(_check(self.driver.cuEventElapsedTime(start, stop)))

"""Codegen and execution: LLVM pipelines, object code, MCJIT engines.

Object code is the unit of everything: a module is optimised and emitted as
an object file once; that object is what the persistent store keeps, and
what an engine loads, whether it was compiled a moment ago or in another
process. The object refers to the Array extension's functions, CPython and
libm by symbol only; the runtime state is an argument of every call (one
per job: `new_state`).

Traps handled here (llvmlite 0.50 / LLVM 22): `llvm.initialize()` is gone
(only the native target and asm printer are initialised); a ModulePassManager
is used once; a TargetMachine is never shared (one for the pass builder and
object emission, a fresh one owned by each engine); symbols are looked up
only by the names this module defined.
"""

from __future__ import annotations

import atexit
import itertools
import platform
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import llvmlite.binding as llvm

from .abi import RuntimeState, function_table
from .support import SUPPORT, support_module

T = TypeVar("T")


_initialised = False


def new_state() -> RuntimeState:
    """A runtime state for one job's compiled calls (they may run in several threads at once,
    each job with its own)."""
    return RuntimeState()


# LLVM's code generator options, set once per process: branches kept within 32-byte blocks, the
# mitigation of Intel's jump-conditional-code erratum that gcc and clang offer (recursive fib 7.2 ->
# 6.5 ms on a Xeon here; a few bytes of padding elsewhere).
CODEGEN_OPTIONS = ("-x86-branches-within-32B-boundaries",) if platform.machine() in ("x86_64", "AMD64") else ()


def initialise() -> None:
    """The symbols of the Array extension (its layout and function table checked first: abi.py),
    native target and asm printer; once per process."""
    global _initialised
    if _initialised:
        return
    addresses = function_table()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for option in CODEGEN_OPTIONS:
        llvm.set_option("relay", option)
    for name, address in addresses.items():
        llvm.add_symbol(name, address)
    _initialised = True


@dataclass(frozen=True)
class Target:
    """Everything about the machine code's target; part of every cache key."""

    triple: str
    cpu: str
    features: str
    opt: int
    reloc: str = "default"
    codemodel: str = "jitdefault"
    options: tuple[str, ...] = CODEGEN_OPTIONS

    @classmethod
    def host(cls, opt: int) -> Target:
        """This machine's target. Asked of LLVM once a process: llvmlite holds one lock around
        every LLVM call, so a thread asking during a long compile would wait for all of it."""
        if not _host:
            initialise()
            _host.extend((llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()))
        triple, cpu, features = _host
        return cls(triple, cpu, features, opt)

    def machine(self) -> llvm.TargetMachine:
        return llvm.Target.from_triple(self.triple).create_target_machine(
            cpu=self.cpu, features=self.features, opt=self.opt, reloc=self.reloc,
            codemodel=self.codemodel, jit=True)


_host: list[str] = []  # this machine's triple, CPU name and features, once known


@dataclass(frozen=True)
class Pipeline:
    """The optimisation settings; part of every cache key."""

    opt: int
    loop_vectorization: bool
    slp_vectorization: bool
    loop_unrolling: bool
    inlining_threshold: int  # llvmlite truncates values above 255
    large: bool = False  # a few linear passes (SCALAR_PASSES) instead of the level's pipeline

    @classmethod
    def for_level(cls, opt: int, large: bool = False) -> Pipeline:
        """The pipeline of an optimisation level; for a large module, passes whose time is linear in its size
        (the full pipelines take time quadratic in a function's length or an expression's)."""
        if large:
            return cls(opt, loop_vectorization=False, slp_vectorization=False, loop_unrolling=False,
                       inlining_threshold=0, large=True)
        # SLP vectorisation only at O3: Numba turned it off by default after
        # miscompilations (numba #8705, #8681).
        return cls(opt, loop_vectorization=opt >= 2, slp_vectorization=opt >= 3,
                   loop_unrolling=opt >= 2, inlining_threshold=[0, 75, 225, 250][opt])


SCALAR_PASSES = ("sroa", "instruction_combine", "simplify_cfg", "new_gvn", "sccp", "dead_code_elimination")


_machines: dict[Target, llvm.TargetMachine] = {}  # for optimising and emitting; each engine owns its own


def compile_object(ir_text: str, target: Target, pipeline: Pipeline) -> bytes:
    """Parses, verifies, optimises and emits object code for one module."""
    module = optimise(ir_text, target, pipeline)
    return _machines[target].emit_object(module)


def optimise(ir_text: str, target: Target, pipeline: Pipeline) -> llvm.ModuleRef:
    """The module parsed, verified and optimised as `compile_object` does (its IR shows what the
    optimiser made of the code, e.g. which loops it vectorized)."""
    initialise()
    module = llvm.parse_assembly(ir_text)
    module.verify()
    tm = _machines.get(target) or _machines.setdefault(target, target.machine())
    if pipeline.large:
        mpm = llvm.create_new_module_pass_manager()
        for name in SCALAR_PASSES:
            getattr(mpm, f"add_{name}_pass")()
        mpm.run(module, llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=0)))
    elif pipeline.opt > 0:
        pto = llvm.create_pipeline_tuning_options(speed_level=pipeline.opt)
        pto.loop_vectorization = pipeline.loop_vectorization
        pto.slp_vectorization = pipeline.slp_vectorization
        pto.loop_unrolling = pipeline.loop_unrolling
        pto.inlining_threshold = pipeline.inlining_threshold
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(module, pb)  # a fresh manager per module: reuse aborts
    return module


class LoadedModule:
    """One object file's code, loaded in the process's engine for its target, and its entry points."""

    def __init__(self, obj: bytes, target: Target, entries: list[str]) -> None:
        initialise()
        load_support()
        self.addresses = _load(obj, target, entries)


_engines: dict[Target, llvm.ExecutionEngine] = {}  # one MCJIT engine per target, holding every object loaded
_loaded: dict[str, int] = {}  # entry name -> address, across the engines


def _load(obj: bytes, target: Target, entries: list[str]) -> dict[str, int]:
    """Adds an object file to the target's engine (entry names are unique per module: see
    builder.entry_name), unless it is there already. A new engine per object cost 1 ms, most of
    it compiling the engine's own empty module when it is first finalised."""
    if all(name in _loaded for name in entries):
        return {name: _loaded[name] for name in entries}
    engine = _engines.get(target)
    if engine is None:
        empty = llvm.parse_assembly("")
        empty.triple = target.triple
        engine = _engines[target] = llvm.create_mcjit_compiler(empty, target.machine())
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    # Only names this module defines are looked up: a missing symbol would kill the process.
    addresses = {name: engine.get_function_address(name) for name in entries}
    _loaded.update(addresses)
    return addresses


def prepare() -> None:
    """LLVM's native target and the support functions, loaded (about 34 MB, once a process)."""
    initialise()
    load_support()


def prepared() -> bool:
    return _initialised and all(name in _loaded for name in SUPPORT)


def load_support() -> None:
    """Compiles and loads the support functions (support.SUPPORT) once per process; every module
    refers to them by name, bound here as process symbols."""
    if all(name in _loaded for name in SUPPORT):
        return
    target = Target.host(2)
    obj = compile_object(str(support_module(target.triple)), target, Pipeline.for_level(2))
    for name, address in _load(obj, target, list(SUPPORT)).items():
        llvm.add_symbol(name, address)


class CompileTimeout(Exception):
    """The job's time ran out before its compilation finished (which goes on, in the background)."""


class Pending(Generic[T]):
    """Work handed to the compile thread: its outcome once `ready()`, or waited for."""

    def __init__(self) -> None:
        self.box: queue.SimpleQueue = queue.SimpleQueue()
        self.outcome: tuple[bool, object] | None = None

    def ready(self) -> bool:
        """Whether the work has finished (never blocks)."""
        if self.outcome is None:
            try:
                self.outcome = self.box.get_nowait()
            except queue.Empty:
                return False
        return True

    def wait(self, deadline_ns: int = 0) -> T:
        """The work's result; raises CompileTimeout when deadline_ns (monotonic; 0: none) passes first."""
        if self.outcome is None:
            timeout = None if deadline_ns == 0 else max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)
            try:
                self.outcome = self.box.get(timeout=timeout)
            except queue.Empty:
                raise CompileTimeout from None
        return self.result()

    def result(self) -> T:
        """The finished work's value, or the exception it raised (once `ready()`)."""
        assert self.outcome is not None
        ok, value = self.outcome
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]


class CompileThread:
    """The one thread that runs LLVM work (IR, optimisation, codegen, loading), in submission order.

    LLVM's global context is not thread-safe, so all of it happens here; a
    job waits for its compilation only until its deadline, and is never held
    past its time limit by a compilation it cannot interrupt. Work a caller
    waits for goes before queued background work. The process waits for the
    work in hand when it exits, however long: LLVM torn down under a
    compilation aborts the process.
    """

    def __init__(self) -> None:
        self.work: queue.PriorityQueue = queue.PriorityQueue()  # (background?, order, work, pending)
        self.order = itertools.count()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.idle = threading.Event()
        self.idle.set()
        self.queued = 0  # submitted and not finished (under lock)
        self.started: float | None = None  # when the work running now started

    def run(self, work: Callable[[], T], deadline_ns: int = 0) -> T:
        """work's result; raises CompileTimeout when deadline_ns (monotonic; 0: none) passes first."""
        return self.submit(work, background=False).wait(deadline_ns)

    def busy_for(self) -> float:
        """How long the work running now has run (0: none)."""
        started = self.started
        return 0.0 if started is None else time.monotonic() - started

    def submit(self, work: Callable[[], T], background: bool = True) -> Pending[T]:
        """Queues work; the caller goes on and looks at the Pending when it likes."""
        pending: Pending[T] = Pending()
        with self.lock:
            if self.thread is None:
                atexit.register(self.idle.wait)
            if self.thread is not None and not self.thread.is_alive():  # a forked child: the work was the parent's
                self.work, self.queued, self.started = queue.PriorityQueue(), 0, None
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._serve, name="relay-llvm", daemon=True)
                self.thread.start()
            self.queued += 1
            self.idle.clear()
            self.work.put((background, next(self.order), work, pending))
        return pending

    def _serve(self) -> None:
        while True:
            _, _, work, pending = self.work.get()
            self.started = time.monotonic()
            try:
                pending.box.put((True, work()))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                pending.box.put((False, exc))
            self.started = None
            with self.lock:
                self.queued -= 1
                if not self.queued:
                    self.idle.set()


COMPILER = CompileThread()

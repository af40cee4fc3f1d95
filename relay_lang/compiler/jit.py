"""Compiles a function group (typing, lowering, codegen through the cache) and calls it."""

from __future__ import annotations

import ctypes
import hashlib
import sys
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm

from ..budget import Limits, stack_limit
from ..errors import Pos, RelayError
from ..hashing import node_hash
from ..nodes import Call, FnLit, Name
from ..resolver import Resolution
from . import engine
from .abi import AT_CALLER, ERR_ARGUMENT_TYPE, Recorded, RuntimeState, relay_error
from .builder import ModuleBuilder, entry_name
from .cache import CompileCache, DirectoryStore, ObjectStore
from .infer import ARR, BOOL, NULL, NUM, Signature, Typed, Typer, enumerate_nodes

LARGE_MODULE = 10_000  # AST nodes in a module's functions
TYPE_NAMES = {NUM: "number", BOOL: "bool", ARR: "array", NULL: "null"}
CTYPES: dict[str, type[ctypes._SimpleCData]] = {NUM: ctypes.c_double, BOOL: ctypes.c_int8, ARR: ctypes.py_object, NULL: ctypes.c_int8}


def directive_level(fn: FnLit) -> int:
    for d in fn.directives:
        if d.name == "optimize":
            return int(d.args[0])
    return 2


def has_directive(fn: FnLit, name: str) -> bool:
    return any(d.name == name for d in fn.directives)


class Compiled:
    """A compiled specialisation, callable from the interpreter."""

    def __init__(self, group: list[Typed], module: engine.LoadedModule, root: Typed, key: str) -> None:
        self.group = group  # every function of the module: error records index into it
        self.sig = root.sig
        self.ret = root.ret
        self.module = module  # keeps the engine alive
        # PYFUNCTYPE: called with the GIL, which the code itself lets go of when it runs long (builder.py).
        proto = ctypes.PYFUNCTYPE(CTYPES[root.ret], ctypes.POINTER(RuntimeState),
                                  *[CTYPES[p] for p in root.sig.params])
        self.cfunc = proto(module.addresses[entry_name(root.sig, group.index(root), key)])
        self.ordinals = [enumerate_nodes(t.sig.fn) for t in group]

    def error(self, rt: RuntimeState, limits: Limits) -> RelayError:
        """The Relay error the compiled code recorded in the runtime state."""
        typed = self.group[rt.err_fn]
        err = relay_error(rt.err_code, Recorded(rt.err_x, rt.err_y, limits, typed.sig.fn, TYPE_NAMES[typed.ret]))
        err.pos = self.position(rt.err_fn, rt.err_node)
        frames: list[tuple[str, Pos | None, int]] = []
        for k in range(min(rt.nframes, len(rt.frames) // 3)):
            fn_index, node, repeats = rt.frames[3 * k], rt.frames[3 * k + 1], rt.frames[3 * k + 2]
            call = self.ordinals[fn_index][node]
            callee = call.callee.name if isinstance(call, Call) and isinstance(call.callee, Name) else "?"
            frames.append((callee, self.position(fn_index, node), repeats))
        if rt.err_node == AT_CALLER and frames:
            err.pos = frames[0][1]
        frames.append((self.sig.fn.name, None, 1))  # the call from interpreted code: placed later
        err.native_stack = frames
        return err

    def position(self, fn_index: int, node: int) -> Pos | None:
        if node < 0:
            return None  # failed on entry: the error belongs to the interpreted call site
        return self.ordinals[fn_index][node].pos


class Compiler:
    """Typing, lowering and codegen for a program's functions, through the cache."""

    def __init__(self, res: Resolution, top_level: dict[str, FnLit], store: ObjectStore | None = None,
                 cache: CompileCache | None = None) -> None:
        self.res = res
        self.top_level = top_level
        self.cache = cache if cache is not None else CompileCache(store if store is not None else DirectoryStore())
        self.typer = Typer(res, top_level)

    def compile_many(self, sigs: list[Signature], deadline_ns: int = 0) -> list[Compiled]:
        """Compiles functions (and all they call) into one module: one optimisation and codegen run.

        The optimisation level is the first function's; the router batches functions by level.
        LLVM runs on the compile thread; past deadline_ns (monotonic; 0: none) this raises
        engine.CompileTimeout without waiting for it.
        """
        return self.start_many(sigs, background=False).wait(deadline_ns)

    def start_many(self, sigs: list[Signature], background: bool = True) -> engine.Pending[list[Compiled]]:
        """Types the functions now (raising infer.Unsupported) and compiles them on the compile
        thread while the caller goes on (work to be waited for goes before background work)."""
        roots = [self.typer.function(sig) for sig in sigs]
        group: list[Typed] = []
        for root in roots:
            group.extend(t for t in self._group(root) if t not in group)
        level = directive_level(sigs[0].fn)
        # LLVM's optimisations and optimising code generator take time quadratic in a function's
        # length; past LARGE_MODULE nodes linear passes and the fast code generator do the work.
        large = sum(len(enumerate_nodes(t.sig.fn)) for t in group) > LARGE_MODULE
        target = engine.Target.host(0 if large else level)
        pipeline = engine.Pipeline.for_level(level, large)
        fastmath = {t.sig for t in group if has_directive(t.sig.fn, "fastmath")}
        key = module_key(group, fastmath, target, pipeline)
        entries = [entry_name(t.sig, i, key) for i, t in enumerate(group)]

        def build() -> bytes:
            module = ModuleBuilder(f"relay_{sigs[0].fn.name}", group, self.res, target.triple, fastmath, key).build()
            return engine.compile_object(str(module), target, pipeline)

        def compiled() -> list[Compiled]:
            module = self.cache.get_or_build(key, build, lambda obj: engine.LoadedModule(obj, target, entries))
            return [Compiled(group, module, root, key) for root in roots]  # type: ignore[arg-type]

        return engine.COMPILER.submit(compiled, background)

    def group_nodes(self, sig: Signature) -> int:
        """The AST nodes of the module a function compiles into: its own and its callees' (typing it
        now, raising infer.Unsupported)."""
        return sum(len(enumerate_nodes(t.sig.fn)) for t in self._group(self.typer.function(sig)))

    def _group(self, root: Typed) -> list[Typed]:
        """The root and every specialisation it calls, in a deterministic (discovery) order."""
        order: list[Typed] = []
        seen: set[Signature] = set()
        todo = [root.sig]
        while todo:
            s = todo.pop(0)
            if s in seen:
                continue
            seen.add(s)
            typed = self.typer.done[s]
            order.append(typed)
            todo.extend(typed.calls.values())
        return order


def _compiler_digest() -> str:
    """A digest of the source of everything that decides the object code: the passes, and
    `nodes.walk` (the node numbers in error records follow its order) and the builtin table."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in ("infer.py", "bounds.py", "abi.py", "support.py", "frame.py", "arrays.py", "lower.py", "builder.py",
                 "engine.py", "jit.py", "../nodes.py", "../builtin_table.py", "../_array.h", "../_array.c", "../_abi.c"):
        h.update((here / path).read_bytes())
    return h.hexdigest()


COMPILER_DIGEST = _compiler_digest()


def module_key(group: list[Typed], fastmath: set[Signature], target: engine.Target, pipeline: engine.Pipeline) -> str:
    """The cache key of a module: everything that changes its machine code, in one hash.

    The functions' content hashes and specialisations, fastmath, the compiler's own source,
    llvmlite and LLVM versions, the Python ABI (the code calls CPython), target and pipeline.
    """
    parts = [COMPILER_DIGEST, llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)),
             sys.implementation.cache_tag, repr(target), repr(pipeline)]
    parts += [f"{node_hash(t.sig.fn)}:{','.join(t.sig.params)}:{t.sig in fastmath}" for t in group]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class States:
    """The runtime states of one job's compiled calls: one for each call running now, reused.

    A call's state is its own: the pins of its arrays name it, and its error record must not be
    overwritten by another call, which may run in another thread (a host program calling one
    interpreter from several threads) or in this one, in the middle of it (a finalizer that the
    garbage collector runs when compiled code allocates). list and dict operations are atomic
    under the GIL: no lock.
    """

    def __init__(self) -> None:
        self.free: list[RuntimeState] = []
        self.running: dict[int, RuntimeState] = {}  # by id (ctypes structures are unhashable)

    def take(self) -> RuntimeState:
        try:
            rt = self.free.pop()
        except IndexError:
            rt = engine.new_state()
        self.running[id(rt)] = rt
        return rt

    def give_back(self, rt: RuntimeState) -> None:
        del self.running[id(rt)]
        self.free.append(rt)

    def stop(self) -> None:
        """Compiled calls running now stop at their next check of the clock (thread-safe)."""
        for rt in list(self.running.values()):
            rt.stop = 1


def states(limits: Limits) -> States:
    """The runtime states of the job whose budgets `limits` holds."""
    found = limits.native
    if found is None:
        found = limits.native = States()
    return found  # type: ignore[return-value]


NOT_TAKEN = object()  # compiled code declined the call (an array argument is not of the numbers kind)


def call_compiled(compiled: Compiled, limits: Limits, args: tuple) -> object:
    """Runs compiled code from the interpreter with its budgets; errors become Relay errors.

    Returns NOT_TAKEN, having run nothing, when an array argument is of the values kind (see _array.c).
    """
    pool = states(limits)
    rt = pool.take()
    try:
        return _run(compiled, limits, rt, args)
    finally:
        pool.give_back(rt)


def _run(compiled: Compiled, limits: Limits, rt: RuntimeState, args: tuple) -> object:
    rt.err_code = 0
    rt.nframes = 0
    rt.depth = limits.depth[0]
    rt.max_depth = limits.max_depth
    rt.stop = 0  # then the stop requested so far; one requested from now on sets it again (States.stop)
    if limits.stop_error is not None:
        rt.stop = 1
    rt.deadline_ns = limits.deadline_ns
    rt.stack_limit = stack_limit()
    rt.memory_ceiling = limits.memory_ceiling
    result = compiled.cfunc(rt, *args)
    if rt.err_code:
        if rt.err_code == ERR_ARGUMENT_TYPE:
            return NOT_TAKEN
        raise compiled.error(rt, limits)
    if compiled.ret == BOOL:
        return bool(result)
    if compiled.ret == NULL:
        return None
    return result

"""The execution router: which tier runs each function, and why.

- `@llvm` (or `--tier llvm`): compiled strictly when the program is loaded,
  before it runs; anything unsupported is a compile error with its position.
- `@interpret` (or `--tier interpret`): the interpreter, always.
- Otherwise (auto): top-level functions with loops or arithmetic are compiled
  once hot, specialised on the argument types of the call that made them hot
  (functions with loops at their first call, others after 20 calls). When
  they cannot compile they stay interpreted, silently; `--explain` says why.

A compiled function replaces its `FunctionCode.py` by an entry that checks
the argument types and otherwise falls back to the interpreter, so calls
with other types keep the interpreter's exact behaviour and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._array import Array, holds_numbers
from ..budget import Limits
from ..errors import RelayError
from ..nodes import Assign, Binary, FnDecl, FnLit, Let, Name, Program, ServerDecl, walk
from ..resolver import Global, Resolution
from . import engine
from .bounds import has_loops
from .cache import CompileCache, DirectoryStore, ObjectStore
from .engine import CompileTimeout, Pending
from .gpu_check import checked_kernel
from .gpu_runtime import device_status
from .infer import ARR, BOOL, NUM, Signature, Unsupported, param_type
from .jit import NOT_TAKEN, Compiled, Compiler, call_compiled, directive_level, has_directive, states

if TYPE_CHECKING:
    from ..emitter import FunctionCode, Unit

HOT_CALLS_WITH_LOOPS = 1
HOT_CALLS = 20
LONG_COMPILE = 0.1  # seconds: a compile running longer is not waited behind
BACKGROUND_NODES = 500  # the largest module (a function and its callees) compiled in the background: under 1 MB


def global_changes(program: Program, res: Resolution) -> tuple[set[str], set[str]]:
    """The globals a program binds, and those it binds after their declaration.

    A global changes when it is assigned (`f = ...`), declared again (`set f = ...`,
    a second `fn f`, a `server f`) or declared by a `let`.
    """
    bound: set[str] = set()
    rebound: set[str] = set()
    for n in walk(program):
        name = _bound_name(n, res)
        if name is None:
            continue
        if name in bound or not isinstance(n, FnDecl):
            rebound.add(name)
        bound.add(name)
    return bound, rebound


def _bound_name(n: object, res: Resolution) -> str | None:
    if isinstance(n, Assign) and isinstance(n.target, Name) and isinstance(res.bindings.get(n.target), Global):
        return n.target.name
    if isinstance(n, Let) and isinstance(res.bindings.get(n), Global):
        return n.name
    if isinstance(n, FnDecl) and isinstance(res.bindings.get(n), Global):
        return n.fn.name
    if isinstance(n, ServerDecl):  # always a global: servers are declared at the top level only
        return n.name
    return None


def static_functions(program: Program, res: Resolution) -> dict[str, FnLit]:
    """Top-level functions whose global name never changes: calls to them bind statically."""
    rebound = global_changes(program, res)[1]
    return {s.fn.name: s.fn for s in program.stmts
            if isinstance(s, FnDecl) and isinstance(res.bindings.get(s), Global) and s.fn.name not in rebound}


def _numeric_work(fn: FnLit) -> bool:
    return any(isinstance(n, Binary) for n in walk(fn.body))


def _why(fn: FnLit, otherwise: str) -> str:
    """The directive that makes fn compiled strictly, else `otherwise` (the --tier option)."""
    return "@gpu" if has_directive(fn, "gpu") else "@llvm" if has_directive(fn, "llvm") else otherwise


def _device_note(fn: FnLit) -> str:
    """Where a @gpu function's calls run, and why: the CPU, through the LLVM tier, for now."""
    if not has_directive(fn, "gpu"):
        return ""
    ok, what = device_status()
    why = f"{what} is present, but relay run does not launch @gpu code on it yet" if ok else what
    return f"; device: CPU ({why})"


def value_type(v: object) -> str | None:
    t = type(v)
    if t is float:
        return NUM
    if t is bool:
        return BOOL
    if holds_numbers(v):
        return ARR
    return None


SHALLOW = {NUM: lambda v: type(v) is float, BOOL: lambda v: type(v) is bool, ARR: lambda v: type(v) is Array}


class Router:
    def __init__(self, limits: Limits, global_value: Callable[[str], object], tier: str = "auto",
                 store: ObjectStore | None = None, cache: CompileCache | None = None) -> None:
        """`global_value(name)` reads a global of the running program; `cache` shares compiled
        modules between interpreters of one process (a worker's jobs)."""
        if tier not in ("auto", "interpret", "llvm"):
            raise ValueError(f"unknown tier {tier!r}")
        self.limits = limits
        self.global_value = global_value
        self.tier = tier
        self.cache = cache or CompileCache(store if store is not None else DirectoryStore())
        self.decisions: dict[int, tuple[str, str, str]] = {}  # id(FnLit) -> (name, tier, reason)
        self.static_names: set[str] = set()  # globals that compiled code of earlier units calls statically
        self.reverts: list[Callable[[], None]] = []  # each puts one function back on the interpreter

    # ------------------------------------------------------------ decisions

    def request_stop(self) -> None:
        """Compiled code running now stops at its next check of the clock (thread-safe)."""
        states(self.limits).stop()

    def note(self, fn: FnLit | None, name: str, tier: str, reason: str) -> None:
        self.decisions[id(fn)] = (name, tier, reason)

    def explain(self) -> list[str]:
        lines = [f"{name}: {tier} ({reason})" for name, tier, reason in self.decisions.values()]
        stats = self.cache.stats
        if stats.compiled or stats.store_loads or stats.memory_hits:
            lines.append(f"cache: {stats.compiled} compiled, {stats.store_loads} loaded from the object store, "
                         f"{stats.memory_hits} already loaded")
        return lines

    def prepare(self, unit: Unit, program: Program, res: Resolution) -> None:
        """Decides the tier of every function of a freshly compiled unit.

        A unit (a REPL entry) that binds a global earlier compiled code calls statically
        puts all earlier functions back on the interpreter, which looks globals up.
        """
        if global_changes(program, res)[0] & self.static_names:
            for revert in self.reverts:
                revert()
            self.reverts.clear()
            self.static_names.clear()
        top_level = static_functions(program, res)
        self.static_names |= set(top_level)
        compiler = Compiler(res, top_level, cache=self.cache)
        statics = {id(fn) for fn in top_level.values()}
        strict: list[tuple[FunctionCode, str, Signature]] = []
        for code in unit.codes:
            self.decide(code, compiler, statics, strict)
        self.compile_strict(strict, compiler)

    def decide(self, code: FunctionCode, compiler: Compiler, statics: set[int],
               strict_batch: list[tuple[FunctionCode, str, Signature]]) -> None:
        """Notes the tier of one function; strict (@llvm) ones join the batch compiled together."""
        fn: FnLit = code.node  # type: ignore[assignment]
        name = fn.name or f"anonymous fn at line {fn.pos.line}"
        strict = self.tier == "llvm" or has_directive(fn, "llvm") or has_directive(fn, "gpu")
        if has_directive(fn, "interpret") or (self.tier == "interpret" and not strict):
            self.note(fn, name, "interpreter", "@interpret" if has_directive(fn, "interpret") else "--tier interpret")
        elif self.tier == "interpret":  # @llvm and @gpu code must still be compilable: check it, run it interpreted
            why = _why(fn, "@llvm")
            sig = Signature(fn, self.parameter_types(fn, name, why))
            self.check(lambda: self.typed(compiler, sig), name, why)
            self.note(fn, name, "interpreter", f"--tier interpret; {why} checked")
        elif strict:
            why = _why(fn, "--tier llvm")
            sig = Signature(fn, self.parameter_types(fn, name, why))
            self.check(lambda: self.typed(compiler, sig), name, why)  # errors in source order
            strict_batch.append((code, name, sig))
            self.note(fn, name, "llvm", f"{why}, compiling")  # keeps its place in the explanation
        elif id(fn) not in statics:
            self.note(fn, name, "interpreter", "closures, nested functions and handlers compile only with @llvm")
        elif not (has_loops(fn.body) or _numeric_work(fn)):
            self.note(fn, name, "interpreter", "no loops or numeric work")
        else:
            self.install_hot_counter(code, fn, name, compiler)

    @staticmethod
    def typed(compiler: Compiler, sig: Signature) -> object:
        """Types a strict function; a @gpu one must also be a loop of independent iterations (gpu_check)."""
        return checked_kernel(compiler.typer, sig) if has_directive(sig.fn, "gpu") else compiler.typer.function(sig)

    def parameter_types(self, fn: FnLit, name: str, why: str) -> tuple[str, ...]:
        """Compiled parameter types from the annotations (unannotated: number)."""
        params = []
        for p in fn.params:
            t = param_type(p.type)
            if t is None:
                raise RelayError(f"{why} {name}: parameter '{p.name}' of type {p.type} cannot be compiled "
                                 "(compiled code takes numbers, bools and array<number>)", p.pos, kind="compile error")
            params.append(t)
        return tuple(params)

    def check(self, attempt: Callable[[], object], name: str, why: str) -> object:
        try:
            return attempt()
        except Unsupported as u:
            raise RelayError(f"{why} {name}: {u.reason}", u.pos, kind="compile error") from None

    def compile_strict(self, batch: list[tuple[FunctionCode, str, Signature]], compiler: Compiler) -> None:
        """Compiles the @llvm functions of a unit, one module per optimisation level."""
        levels = sorted({directive_level(sig.fn) for _, _, sig in batch})
        for level in levels:
            part = [(code, name, sig) for code, name, sig in batch if directive_level(sig.fn) == level]
            try:
                with self.limits.uncounted():  # the compiler's memory is not the program's
                    compiled = compiler.compile_many([sig for _, _, sig in part], self.limits.deadline_ns)
            except CompileTimeout:  # placed at the first function the batch compiles
                raise RelayError(self.limits.time_limit_message(), part[0][2].fn.pos, kind="limit") from None
            for (code, name, sig), c in zip(part, compiled):
                original: Callable = code.py  # type: ignore[assignment]
                code.py = self.entry(original, c)
                self.reverts.append(self.settler(code, sig.fn, original))
                self.note(sig.fn, name, "llvm", f"{_why(sig.fn, '--tier llvm')}, ({', '.join(sig.params)}) at O{level}"
                                                + _device_note(sig.fn))

    def install_hot_counter(self, code: FunctionCode, fn: FnLit, name: str, compiler: Compiler) -> None:
        """Counts calls; once hot, compiles the function for the argument types of that call.

        A function with loops compiles at its first call, which waits for it (~20 ms): without
        on-stack replacement, that call is the one whose loops need it (it goes before queued
        background work); unless the compile thread has been busy for LONG_COMPILE seconds
        with work that cannot be interrupted (a large module, one a time limit gave up on):
        then it compiles in the background, as any other function does. Any other function
        compiles in the background from its 20th call and keeps running in the interpreter
        meanwhile: it switches to compiled code at its first call after the compile is done.
        What a background compile adds to the process counts as the program's memory, since
        the program runs meanwhile: so only modules (the function and its callees) of up to
        BACKGROUND_NODES nodes compile in the background (under 1 MB each); larger ones wait,
        their compile uncounted, as does LLVM's own start (34 MB, once a process).
        """
        original: Callable = code.py  # type: ignore[assignment]
        loops = has_loops(fn.body)
        threshold = HOT_CALLS_WITH_LOOPS if loops else HOT_CALLS
        hot = f"hot after {threshold} call{'s' if threshold > 1 else ''}"
        calls = 0
        pending: Pending[list[Compiled]] | None = None
        types: list[str | None] = []
        self.note(fn, name, "interpreter", f"not hot yet (compiles after {threshold} call{'s' if threshold > 1 else ''})")
        settle = self.settler(code, fn)

        def stay(reason: str) -> Callable:
            settle(original)
            self.note(fn, name, "interpreter", reason)
            return original

        def switch(compiled: Compiled, how: str) -> Callable:
            entry = self.entry(original, compiled)
            settle(entry)
            self.note(fn, name, "llvm", f"{hot}, {how}({', '.join(types)}) at O{directive_level(fn)}")  # type: ignore[arg-type]
            return entry

        def finished(wait: bool) -> Callable:
            """The code to run now that the compile is done (or, with wait, once it is)."""
            assert pending is not None
            try:
                if wait:
                    with self.limits.uncounted():
                        compiled = pending.wait(self.limits.deadline_ns)[0]
                else:
                    compiled = pending.result()[0]
            except Unsupported as u:
                return stay(u.describe())
            except CompileTimeout:
                return stay("compiling would not finish within the time limit")
            return switch(compiled, "" if wait else f"compiled in the background, switched at call {calls}, ")

        def counting(c: tuple, *args: object) -> object:
            nonlocal calls, pending, types
            calls += 1
            if pending is not None:  # compiling in the background
                return (finished(wait=False) if pending.ready() else original)(c, *args)
            if calls < threshold:
                return original(c, *args)
            types = [value_type(a) for a in args]
            if len(args) != len(fn.params) or None in types:
                return stay("hot, but called with arguments compiled code does not take")(c, *args)
            try:
                sig = Signature(fn, tuple(types))  # type: ignore[arg-type]
                with self.limits.uncounted():  # the compiler's memory is not the program's
                    background = ((not loops or engine.COMPILER.busy_for() > LONG_COMPILE)
                                  and compiler.group_nodes(sig) <= BACKGROUND_NODES)
                    if background and not engine.prepared():  # LLVM's start: ~34 MB, once a process
                        engine.COMPILER.run(engine.prepare, self.limits.deadline_ns)
                    pending = compiler.start_many([sig], background)
            except Unsupported as u:
                return stay(u.describe())(c, *args)
            except CompileTimeout:
                return stay("compiling would not finish within the time limit")(c, *args)
            if not background:
                return finished(wait=True)(c, *args)
            self.note(fn, name, "interpreter", f"{hot}, compiling in the background")
            return original(c, *args)

        code.py = counting
        self.reverts.append(lambda: settle(original))

    def settler(self, code: FunctionCode, fn: FnLit, py: Callable | None = None) -> Callable:
        """A function that installs py (or its argument) as the code of fn, and of its global."""
        def settle(new: Callable | None = py) -> None:
            code.py = new
            instance = self.global_value(fn.name)
            if getattr(instance, "code", None) is code:
                instance.py = new  # type: ignore[attr-defined]
        return settle

    def entry(self, original: Callable, compiled: Compiled) -> Callable:
        """The compiled function behind an argument-type check; other calls go to the interpreter."""
        limits = self.limits
        params = compiled.sig.params
        n = len(params)

        def compiled_entry(c: tuple, *args: object) -> object:
            # Arrays are checked element by element in compiled code, which declines mixed arrays.
            if len(args) == n and all(SHALLOW[p](a) for a, p in zip(args, params)):
                result = call_compiled(compiled, limits, args)
                if result is not NOT_TAKEN:
                    return result
            return original(c, *args)

        return compiled_entry

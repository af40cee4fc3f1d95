"""The interpreter tier: compiles programs (parse, resolve, generate) and runs them.

An `Interpreter` owns one namespace in which all its generated code runs
(globals are `g_*` names there), the runtime support that code calls, the
recursion and time budgets, and the actor runtime that hosts its servers.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TextIO

from . import _array, numeric, ops
from ._array import Array
from .actors import LocalRuntime, Runtime, ServerInstance
from .budget import (
    BIG,
    DEFAULT_MAX_DEPTH,
    MEMORY_WATCH,
    WATCHDOG,
    Limits,
    checking,
    native_stack_full,
    raise_recursion_limit,
    timed,
)
from .builtin_table import ARITY, MAX_ARRAY, arity_message, native_stack_message, too_deep_message
from .builtins import make_builtins
from .codegen import generate
from .compiler.cache import CompileCache, ObjectStore
from .compiler.router import Router
from .emitter import GLOBAL_PREFIX, FunctionCode, Unit, global_name
from .errors import Pos, RelayError
from .parser import parse
from .resolver import resolve
from .values import Builtin, Cell, Function, ServerRef, show, type_name, with_article

WALK_FRAMES = 16  # Python frames an array method adds between a callback and its caller (measured: see _walk)
# What Python's compile() of generated code costs, per character of it (measured: 0.67 us and
# 80 bytes of peak resident memory a character, on a 5 MB unit).
PY_COMPILE_SECONDS = 7e-7
PY_COMPILE_BYTES = 80


class Interpreter:
    def __init__(self, out: TextIO | None = None, max_depth: int = DEFAULT_MAX_DEPTH,
                 runtime: Runtime | None = None, repl: bool = False,
                 err: TextIO | None = None, tier: str = "auto", store: ObjectStore | None = None,
                 cache: CompileCache | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.limits = Limits(max_depth)
        self.repl = repl
        self.units: dict[str, Unit] = {}
        self.globals_declared: set[str] = set()
        self.server: ServerInstance | None = None  # the server handling a message now
        self.router = Router(self.limits, self.global_value, tier, store, cache)
        self.runtime: Runtime = runtime if runtime is not None else LocalRuntime(self)
        self.ns: dict[str, Any] = {}
        self._bind_support()

    # ------------------------------------------------------------ namespace

    def _bind_support(self) -> None:
        ns = self.ns
        builtins = make_builtins(self)
        ns.update({global_name(name): b for name, b in builtins.items()})
        ns.update({f"_B_{name}": b.impl for name, b in builtins.items()})
        ns.update(
            _G=ns, _D=self.limits.depth, _LIMIT=self.limits.max_depth, _stop=False,
            _too_deep=self._too_deep, _interrupted=self._interrupted,
            _Cell=Cell, _Fn=Function, _FNTYPES=(Function, Builtin), _ServerRef=ServerRef,
            _Array=Array, _pack=_array.pack, _all_numbers=_array.all_numbers,
            _bad_arg=_bad_arg, _bad_return=_bad_return, _fail=_fail, _undefined=_undefined,
            _add=ops.add, _sub=ops.sub, _mul=ops.mul, _div=ops.div, _mod=ops.mod, _pow=ops.power,
            _fmod=numeric.fmod, _power=numeric.power, _compare=ops.compare, _equal=ops.eq,
            _neg=ops.neg, _index=ops.index, _set_index=ops.set_index, _field=ops.field,
            _set_field=ops.set_field, _range_iter=ops.range_iter, _iterate=ops.iterate,
            _range_array=lambda a, b: ops.range_array(a, b, limit=MAX_ARRAY),
            _call=self.call, _call_builtin=self._call_builtin, _method=self._method,
            _state=self._state, _state_field=self._state_field, _state_set=self._state_set, _self=self._self,
            _declare_server=lambda *args: self.runtime.declare(*args), _declare_family=self._declare_family,
        )

    def _declare_family(self, name: str, handlers: dict[str, Function], init: Function) -> ServerRef:
        declare = getattr(self.runtime, "declare_family", None)  # optional in a Runtime (see actors.Runtime)
        if declare is None:
            raise RelayError(f"server family {name}: this runtime does not host server families")
        return declare(name, handlers, init)

    def global_value(self, name: str) -> object:
        """The running program's global `name` (None when it has none)."""
        return self.ns.get(global_name(name))

    def define_global(self, name: str, value: object) -> None:
        """Gives the program a global `name` unless it declared one (the fleet's servers, say)."""
        self.ns.setdefault(global_name(name), value)

    # ------------------------------------------------------------ compiling

    def compile(self, source: str, file: str = "<input>") -> Unit:
        """Parse, resolve and generate; the unit's main function is ready to run.

        The budgets are checked as the lexer and parser go, between the stages, and before
        Python compiles the generated code (which cannot be interrupted): a limit error that
        stops the front end is placed where it got to, or at the program's start.
        """
        raise_recursion_limit(self.limits.max_depth, len(source))
        try:
            return self._compile(source, file)
        except RelayError as err:
            raise err.at(Pos(file, 1, 1)) from None

    def _compile(self, source: str, file: str) -> Unit:
        program = parse(source, file)
        self.check_budget()
        declared = set(self.globals_declared)
        res = resolve(program, declared, allow_redeclare=self.repl)
        self.check_budget()
        unit = generate(program, res, len(self.units), file)
        self.check_budget()
        self._afford_python_compile(len(unit.source))
        with warnings.catch_warnings():  # the generated code is warning-free; a user's -W error changes nothing
            warnings.simplefilter("ignore")
            code = compile(unit.source, unit.filename, "exec")
        self.check_budget()
        self.ns[f"_K{len(self.units)}"] = unit.constants
        exec(code, self.ns)
        for fc in unit.codes + unit.inits:
            fc.py = self.ns[fc.pyname]
        self.units[unit.filename] = unit
        self.router.prepare(unit, program, res)
        self.globals_declared = declared
        return unit

    def _afford_python_compile(self, chars: int) -> None:
        """Refuses to start compiling generated code that would not fit in what is left of the
        budgets (the compile runs to its end whatever happens meanwhile)."""
        limits = self.limits
        if limits.deadline_ns and time.monotonic_ns() + chars * PY_COMPILE_SECONDS * 1e9 > limits.deadline_ns:
            raise RelayError(limits.time_limit_message(), kind="limit")
        self.reserve_memory(chars * PY_COMPILE_BYTES)

    # ------------------------------------------------------------ running

    def run(self, source: str, file: str = "<input>") -> object:
        """Runs a program (or REPL entry) and the messages it sent; returns its value."""
        unit = self.compile(source, file)
        value = self.guard(self.ns[unit.main], ((),))
        self.runtime.run_pending()
        if self.limits.stop_error is not None:  # it came during the last statement, after its last check
            err = RelayError(self._stop_message(), kind="limit")
            raise err.at(next((p for p in reversed(unit.positions) if p is not None), Pos(file, 1, 1)))
        return value

    def guard(self, fn: Callable | Function, args: tuple) -> object:
        """Calls generated code; any failure comes out as a positioned RelayError."""
        saved = self.limits.depth[0]
        try:
            return fn(*args) if not isinstance(fn, Function) else fn.py(fn.c, *args)
        except BaseException as exc:  # noqa: BLE001 - converted or re-raised below
            self.limits.depth[0] = saved
            raise self.relay_error(exc) from None

    def invoke(self, fn: Function, args: list) -> object:
        """Calls a Relay function from the runtime (a server handler, say)."""
        if fn.n != len(args):
            raise RelayError(arity_message(fn.code.name or "function", fn.n, len(args)))
        return self.guard(fn, tuple(args))

    def relay_error(self, exc: BaseException) -> RelayError:
        if isinstance(exc, RelayError):
            err = exc
        elif isinstance(exc, NameError) and (exc.name or "").startswith(GLOBAL_PREFIX):
            err = RelayError(f"undefined variable '{(exc.name or '')[len(GLOBAL_PREFIX):]}'")
        elif isinstance(exc, RecursionError):
            err = RelayError(f"recursion too deep: the program nests calls or values past the limit ({self.limits.max_depth})")
        elif isinstance(exc, MemoryError):
            err = RelayError("out of memory: the program allocates more than this worker can hold")
        else:
            raise exc
        self.place(err, exc.__traceback__)
        err.__traceback__ = exc.__traceback__
        return err

    def place(self, err: RelayError, tb: TracebackType | None) -> None:
        """Fills in the error's position and Relay stack from the Python traceback.

        Frames are read in runs of identical ones (a recursion is one run), so placing an error
        raised 10 million calls deep keeps a few entries, not a list of 10 million.
        """
        runs: list[list] = []  # [unit, python function, line, times], outermost first
        while tb is not None:
            code = tb.tb_frame.f_code
            unit = self.units.get(code.co_filename)
            if unit is not None:
                last = runs[-1] if runs else None
                if last is not None and last[1] == code.co_name and last[2] == tb.tb_lineno and last[0] is unit:
                    last[3] += 1
                else:
                    runs.append([unit, code.co_name, tb.tb_lineno, 1])
            tb = tb.tb_next
        if err.at_call_site and sum(run[3] for run in runs[-2:]) > 1:  # one frame out: drop the innermost
            runs[-1][3] -= 1
            if not runs[-1][3]:
                runs.pop()
        if not runs:
            return
        positions = [unit.positions[line] for unit, _, line, _ in runs]
        if err.pos is None:
            err.pos = next((p for p in reversed(positions) if p is not None), None)
        stack: list[tuple[str, Pos, int]] = []
        for name, pos, times in getattr(err, "native_stack", ()):  # frames of compiled code, innermost first
            stack.append((name, pos if pos is not None else positions[-1], times))
        # Frame k was called at frame k - 1's line: within a run of n frames, n - 1 calls from the
        # run's own line; its first frame was called from the previous run's.
        for k in range(len(runs) - 1, -1, -1):
            unit, pyname, _, times = runs[k]
            name = unit.relay_names.get(pyname, pyname)
            if name.startswith("server "):
                continue
            if times > 1 and positions[k] is not None:
                stack.append((name, positions[k], times - 1))
            if k > 0 and positions[k - 1] is not None:
                stack.append((name, positions[k - 1], 1))
        err.stack = stack

    def write(self, text: str) -> None:
        """Writes program output; characters the output's encoding lacks are escaped, a failing output is a Relay error."""
        try:
            self.out.write(text)
        except UnicodeEncodeError as exc:
            self.out.write(text.encode(exc.encoding, "backslashreplace").decode(exc.encoding))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise RelayError(f"print: cannot write the output ({exc.strerror or exc})") from None

    # ------------------------------------------------------------ budgets

    def request_stop(self, error: RelayError) -> None:
        """Stops the running program at its next loop iteration or call (thread-safe)."""
        self.limits.stop_error = error
        self.ns["_stop"] = True
        self.ns["_LIMIT"] = -1
        self.router.request_stop()

    def start_clock(self, seconds: float | None) -> None:
        """Sets the job's time budget (read by compiled code without the GIL's help)."""
        self.clear_stop()  # nothing stale from a previous job
        self.limits.start_clock(seconds)

    def clear_stop(self) -> None:
        limits = self.limits
        limits.stop_error = None
        limits.deadline_ns = 0
        limits.memory_ceiling = 0
        self.ns["_stop"] = False
        self.ns["_LIMIT"] = limits.max_depth

    def reserve_memory(self, nbytes: int) -> None:
        """Raises the memory limit error when nbytes more would not fit in the job's budget."""
        if self.limits.over_memory(nbytes):
            raise RelayError(self.limits.memory_limit_message(), kind="limit")

    def check_budget(self) -> None:
        """Raises the job's limit error once it must stop; long operations on values call it."""
        if self.limits.stop_error is not None:
            self._interrupted()

    def _interrupted(self) -> None:
        raise RelayError(self._stop_message(), kind="limit")

    def _stop_message(self) -> str:
        stop = self.limits.stop_error
        return stop.message if isinstance(stop, RelayError) else "stopped"

    def _too_deep(self) -> None:
        if self.limits.stop_error is not None:
            self._interrupted()
        err = RelayError(too_deep_message(self.limits.max_depth), kind="limit")
        err.at_call_site = True
        raise err

    # ------------------------------------------------------------ runtime support

    def call(self, f: object, args: tuple) -> object:
        t = type(f)
        if t is Function:
            if f.n != len(args):  # type: ignore[attr-defined]
                raise RelayError(arity_message(f.code.name or "function", f.n, len(args)))  # type: ignore[attr-defined]
            return f.py(f.c, *args)  # type: ignore[attr-defined]
        if t is Builtin:
            return self._call_builtin(f.name, args)  # type: ignore[attr-defined]
        raise RelayError(f"cannot call {type_name(f)} {show(f)}" if t in (float, str, bool) else f"cannot call {type_name(f)}")

    def _call_builtin(self, name: str, args: tuple) -> object:
        lo, hi = ARITY[name]
        if len(args) < lo or (hi is not None and len(args) > hi):
            expected = str(lo) if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            raise RelayError(f"{name} expects {expected} argument{'s' if expected != '1' else ''}, got {len(args)}")
        return self.ns[f"_B_{name}"](*args)

    def _method(self, obj: object, name: str, args: tuple) -> object:
        t = type(obj)
        if t is Array:
            if name in ("push", "pop"):
                return self._call_builtin(name, (obj, *args))
            return self._array_method(obj, name, args)  # type: ignore[arg-type]
        if t is dict:
            f = obj.get(name)  # type: ignore[attr-defined]
            if f is None and name == "get" and len(args) == 1:  # Relay 0.3's state.get(key)
                return ops.index(obj, args[0])
            if f is None and name == "set" and len(args) == 2:  # and state.set(key, value)
                ops.set_index(obj, args[0], args[1])
                return args[1]
            if f is None:
                raise RelayError(f"map has no function field '{name}'")
            return self.call(f, args)
        if t is ServerRef:
            return self.runtime.call(obj, name, list(args))  # type: ignore[arg-type]
        raise RelayError(f"cannot call method '{name}' on {type_name(obj)}")

    def _array_method(self, a: Array, name: str, args: tuple) -> object:
        """Relay 0.3's array methods besides push and pop; each leaves `a` as it is."""
        n = len(args)
        if name == "get" and n == 1:
            return ops.index(a, args[0])
        if name == "length" and n == 0:
            return float(len(a))
        if name in ("map", "filter", "find", "reduce") and n == (2 if name == "reduce" else 1):
            return self._walk(a, name, args)
        raise RelayError(f"arrays have no method '{name}' taking {n} argument{'' if n == 1 else 's'} "
                         "(they have push(v), pop(), get(i), length(), map(f), filter(f), find(f) and reduce(f, init))")

    def _walk(self, a: Array, name: str, args: tuple) -> object:
        """map, filter, find and reduce over a snapshot of `a`: the snapshot (and map's result)
        counted against the memory budget, the budgets checked before each element (a builtin or
        compiled callback checks nothing itself), and the native stack checked first (each call
        through a method nests C frames, which the depth limit does not count).

        While it runs, the walk's own Python frames count towards what unwinding the job would
        cost (`Limits.unwind`): a recursion through callbacks is stopped early enough to unwind."""
        limits = self.limits
        if native_stack_full():
            raise RelayError(native_stack_message(limits.depth[0], limits.max_depth), kind="limit")
        self.reserve_memory((16 if name == "map" else 8) * len(a))
        f, call = args[0], self.call
        limits.unwind[0] += WALK_FRAMES
        try:
            if name == "reduce":
                acc = args[1]
                for x in self._budgeted(a[:]):
                    acc = call(f, (acc, x))
                return acc
            if name == "map":
                return Array([call(f, (x,)) for x in self._budgeted(a[:])])
            if name == "find":
                return next((x for x in self._budgeted(a[:]) if _truthy(call(f, (x,)))), None)
            return Array([x for x in self._budgeted(a[:]) if _truthy(call(f, (x,)))])
        finally:
            limits.unwind[0] -= WALK_FRAMES

    def _budgeted(self, items: Array) -> Iterator[object]:
        """The items, the budgets checked before each one and once after the last."""
        limits = self.limits
        for x in items:
            if limits.stop_error is not None:
                self._interrupted()
            yield x
        if limits.stop_error is not None:
            self._interrupted()

    def _server_now(self) -> ServerInstance:
        if self.server is None:
            raise RelayError("'state' is only available while a server handles a message")
        return self.server

    def _state(self) -> dict:
        """`state` as a whole value: every field may change through it."""
        server = self._server_now()
        server.touched_all = True
        return server.state

    def _state_field(self, name: str) -> object:
        """`state.NAME` read: only that field may change through the value."""
        server = self._server_now()
        server.touched.add(name)
        return server.state.get(name)

    def _state_set(self, name: str, value: object) -> None:
        server = self._server_now()
        server.touched.add(name)
        server.state[name] = value

    def _self(self) -> ServerRef:
        if self.server is None:
            raise RelayError("'self' is only available while a server handles a message")
        return self.server.ref


def _bad_arg(code: FunctionCode, i: int, value: object) -> None:
    ann = code.param_types[i]
    got = type_name(value)
    if ann is not None and ann.elem and type(value) is Array:
        bad = next(x for x in value if type(x) is not float)
        got = f"array with {with_article(type_name(bad))} element"
    err = RelayError(f"{code.name or 'function'}: parameter '{code.params[i]}' expects {ann}, got {got}",
                     kind="type error")
    err.at_call_site = True
    raise err


def _bad_return(ann: object, value: object, name: str) -> None:
    raise RelayError(f"{name}: must return {ann}, returned {type_name(value)}", kind="type error")


def _fail(message: str) -> None:
    raise RelayError(message)


def _undefined(name: str) -> None:
    raise RelayError(f"undefined variable '{name}' (declare it with let)")


def run_with_big_stack(fn: Callable[[], Any], max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Runs fn on a thread with a large C stack, so deep Relay recursion cannot crash the process."""
    raise_recursion_limit(max_depth)
    return BIG.run(fn)


def run_program(source: str, file: str = "<input>", *, interp: Interpreter | None = None,
                time_limit: float | None = None, max_depth: int = DEFAULT_MAX_DEPTH,
                out: TextIO | None = None, err: TextIO | None = None, tier: str = "auto",
                memory_limit: int | None = None) -> object:
    """Runs a whole program within its budgets; returns its value or raises RelayError.

    `max_depth`, `out`, `err` and `tier` configure a new interpreter; they are unused when `interp` is given.
    `memory_limit` (bytes) overrides the interpreter's (`$RELAY_MEMORY_LIMIT`, default 1G).
    """
    if interp is not None and tier != "auto":
        raise ValueError("give the tier to the Interpreter you pass, not to run_program")
    interp = interp if interp is not None else Interpreter(out=out, err=err, max_depth=max_depth, tier=tier)
    return run_budgeted(interp, lambda: interp.run(source, file), time_limit, memory_limit)


def run_budgeted(interp: Interpreter, job: Callable[[], Any], time_limit: float | None,
                 memory_limit: int | None = None) -> Any:
    """Runs job (Relay work on interp) on a big stack, stopped with a Relay error after time_limit seconds
    or once it adds more than memory_limit bytes to the process's resident memory.

    time_limit None or inf: no limit. memory_limit None: interp.limits.memory_limit ($RELAY_MEMORY_LIMIT, default 1G).
    """
    if time_limit is not None and not time_limit >= 0:
        raise RelayError(f"the time limit must be a number of seconds >= 0, got {time_limit}", kind="limit")
    ticket = None
    interp.start_clock(time_limit)
    limits = interp.limits
    if timed(time_limit):
        stop = RelayError(limits.time_limit_message(), kind="limit")
        ticket = WATCHDOG.watch(time_limit, lambda: interp.request_stop(stop), limits.frames)
    memory = memory_limit if memory_limit is not None else limits.memory_limit
    limits.start_memory(memory)
    memory_ticket = None
    if memory is not None:
        too_big = RelayError(limits.memory_limit_message(), kind="limit")
        memory_ticket = MEMORY_WATCH.watch(limits.watched_ceiling, lambda: interp.request_stop(too_big), limits.frames)

    def checked() -> Any:
        with checking(interp.check_budget, interp.reserve_memory):
            return job()

    try:
        return run_with_big_stack(checked, limits.max_depth)
    finally:
        if ticket is not None:
            WATCHDOG.cancel(ticket)
        if memory_ticket is not None:
            MEMORY_WATCH.cancel(memory_ticket)
        interp.clear_stop()


def _truthy(v: object) -> bool:
    return v is not False and v is not None

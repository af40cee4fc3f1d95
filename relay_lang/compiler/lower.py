"""Lowering: typed Relay functions to LLVM IR, with llvmlite.ir.

One module holds a group of specialised functions (a root and its callees).
Conventions of the generated code:

- numbers are `double`, bools `i1`, arrays `i8*` pointing at the very Array
  object the interpreter uses (`_array.c`: its size at byte 16, its items at
  24, its kind at 32). Compiled code takes only arrays of the numbers kind
  (checked once on entry, not per element) and reads and writes their flat
  buffer of doubles in place; new arrays, push and snapshots go through the
  extension's C functions. Every array reference this code holds (a variable,
  a temporary, the array a for-in loop walks) lives in a slot of the
  function's frame that every exit (return, break, error) releases: no
  borrowed pointer outlives what keeps it alive, and nothing leaks on an
  error path.
- array headers (size, items), elements and the runtime state carry distinct
  TBAA tags, and the budget checks are declared as touching no memory the
  caller sees, so LLVM can keep an array's size and buffer in registers
  through a loop that only reads and writes elements.
- an innermost counted loop (`for i in a..b`) whose indexes `bounds.py`
  finds provable is lowered twice: when a test before the loop proves every
  such index whole and in range on every iteration, the copy without
  per-index checks runs on an integer counter (with scoped noalias metadata
  when its arrays are distinct objects, which the test also requires);
  otherwise the checked copy runs, failing exactly where the interpreter does.
- every function takes a pointer to its job's runtime state (`RT_LAYOUT`:
  budgets in, errors out) as a hidden first argument: each interpreter has
  its own, so compiled code of several jobs runs in several threads at once.
- the GIL: the entry point is called with it; the first budget check of a
  call lets it go (`relay_gil_release`), and the entry point takes it back
  before returning. Without it, compiled code touches Python objects only
  through the extension's functions, which take the GIL when they allocate
  or free, and count references of the arrays they pin in their own field.
- errors never unwind: a failing function writes the error into the runtime
  state (code, function index, node ordinal, payload), jumps to
  its exit block, and each caller records its call site in the state's frame
  list and exits too. Node ordinals (see `infer.enumerate_nodes`) keep object
  code free of source positions, so cached code serves reformatted sources.
- budgets: each function takes its call depth as a hidden second argument and
  checks it against the state's `max_depth`, and checks that its frame lies above
  the state's `stack_limit` (the native stack is never exhausted, whatever the
  frame size); entry increments a tick counter; every loop of a function
  counts its iterations in one counter of that function (never reset, so
  loops at any nesting depth are counted); every 65,536 ticks the clock is
  compared with the job's deadline (`clock_gettime`, no Python, no GIL needed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, assert_never

from llvmlite import ir

from ..builtin_table import MAX_ARRAY
from ..nodes import (
    ArrayLit,
    Assign,
    Binary,
    Block,
    Bool,
    Break,
    Call,
    Continue,
    Expr,
    ExprStmt,
    Field,
    FnDecl,
    FnLit,
    ForEach,
    ForRange,
    If,
    IfExpr,
    Index,
    Let,
    Logical,
    MapLit,
    MethodCall,
    Name,
    Node,
    Null,
    Num,
    Range,
    Return,
    SelfRef,
    ServerDecl,
    StateRef,
    Stmt,
    Str,
    Unary,
    While,
)
from ..resolver import Decl, Resolution
from .bounds import Provable, name_decl, provable_loops
from .infer import ARR, BOOL, NULL, NUM, Signature, Typed, annotation_holds, enumerate_nodes

DOUBLE = ir.DoubleType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = I8.as_pointer()
MAX_FRAMES = 10_000  # runs of frames kept (as many as the default depth limit); deeper ones are counted
# The runtime state that compiled code of one job shares with its interpreter: the one definition
# of its layout (engine.RuntimeState is built from it).
RT_LAYOUT: tuple[tuple[str, ir.Type], ...] = (
    ("stop", I64), ("depth", I64), ("max_depth", I64), ("err_code", I64), ("err_fn", I64), ("err_node", I64),
    ("err_x", DOUBLE), ("err_y", I64), ("ticks", I64), ("deadline_ns", I64), ("stack_limit", I64),
    ("memory_ceiling", I64), ("page_size", I64), ("nframes", I64),
    ("allocated", I64),  # bytes of arrays made since the budgets were last checked (see count_allocation)
    ("frames", ir.ArrayType(I64, 3 * MAX_FRAMES)),  # runs of frames: (function, call node, repeats)
)
RT_FIELDS = tuple(name for name, _ in RT_LAYOUT)
RT_TYPE = ir.LiteralStructType([t for _, t in RT_LAYOUT])
RT_PTR = RT_TYPE.as_pointer()
ERR_INDEX, ERR_DEPTH, ERR_TIME, ERR_ARRAY_SIZE, ERR_ARRAY_BUDGET, ERR_MEMORY = 1, 2, 3, 4, 5, 6
ERR_ARGUMENT_TYPE = 7  # not a Relay error: an array argument is not of the numbers kind; the interpreter takes the call
ERR_STACK = 8  # the native stack is full (err_y: the call depth)
ERR_RETURN_TYPE = 9  # the function's return annotation does not hold its compiled return type
ERR_MEMORY_LIMIT = 10  # the process's resident memory would pass the job's ceiling
ERR_ARRAY_BUSY = 11  # push would grow an array that compiled code of another thread holds
ARRAY_SIZE, ARRAY_ITEMS, ARRAY_KIND, ARRAY_CAPACITY = 16, 24, 32, 40  # byte offsets in an Array (checked: engine)
ARRAY_PINS, ARRAY_PIN_OWNER, ARRAY_OWNER_PINS = 48, 56, 64  # calls holding it, the first's state, its pins
NUMBERS_KIND = 0
# The C functions of the _array extension that compiled code calls (their addresses come from _array.addresses()).
ARRAY_FUNCTIONS = {
    "relay_array_new": ir.FunctionType(PTR, [I64]),  # a numbers array of n zeros, or null
    "relay_array_push": ir.FunctionType(I32, [PTR, DOUBLE, RT_PTR]),  # 0; -1: out of memory; -2: held elsewhere
    "relay_array_copy": ir.FunctionType(PTR, [PTR]),  # a copy, or null
    "relay_array_incref": ir.FunctionType(ir.VoidType(), [PTR]),
    "relay_array_decref": ir.FunctionType(ir.VoidType(), [PTR]),  # null: nothing
    "relay_array_pin": ir.FunctionType(ir.VoidType(), [PTR, RT_PTR]),  # with the GIL: the call holds it
    "relay_array_unpin": ir.FunctionType(ir.VoidType(), [PTR, RT_PTR]),
    "relay_gil_release": ir.FunctionType(ir.VoidType(), []),  # once per call; what follows runs without the GIL
    "relay_gil_reacquire": ir.FunctionType(ir.VoidType(), []),  # before returning to the interpreter
}
ALLOCATION_CHECK = 1 << 20  # bytes of arrays made between two checks of the budgets
AT_CALLER = -2  # err_node of an error the interpreter places at the caller's call, keeping the callee's frame
TICK_MASK = 0xFFFF
Owner: TypeAlias = ir.AllocaInstr | None  # the slot owning an array reference; None: borrowed
LLVM_TYPES = {NUM: DOUBLE, BOOL: I1, ARR: PTR, NULL: I8}
ZERO = {NUM: ir.Constant(DOUBLE, 0.0), BOOL: ir.Constant(I1, 0), ARR: ir.Constant(PTR, None),
        NULL: ir.Constant(I8, 0)}
LIBM = {"tan": "tan", "atan": "atan", "exp": "exp", "log": "log", "atan2": "atan2"}
INTRINSIC = {"sqrt": "llvm.sqrt", "sin": "llvm.sin", "cos": "llvm.cos", "floor": "llvm.floor",
             "ceil": "llvm.ceil", "round": "llvm.round", "abs": "llvm.fabs"}
FCMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


# The support functions compiled code calls: name -> (type, builder method, cold). They are built
# once per process, in their own module (`support_module`), and every other module only declares
# them: optimising and emitting them anew for each function cost about half of a small compile.
# They run only on errors and every 65,536 loop iterations: cold.
SUPPORT: dict[str, tuple[ir.FunctionType, str, bool]] = {
    "relay_time_up": (ir.FunctionType(I1, [RT_PTR]), "_clock_check", True),
    "relay_memory_over": (ir.FunctionType(I1, [RT_PTR, I64]), "_memory_check", True),
    "relay_budget": (ir.FunctionType(I64, [RT_PTR]), "_budget_check", True),
    "relay_fail": (ir.FunctionType(ir.VoidType(), [RT_PTR, I64, I64, I64, DOUBLE, I64]), "_fail_helper", True),
    "relay_unwind": (ir.FunctionType(ir.VoidType(), [RT_PTR, I64, I64]), "_unwind_helper", True),
}

# The budget checks read only fields compiled code never writes (stop, deadline, memory ceiling) and
# the GIL's state (kept by the extension): callers may treat them as touching no memory they can
# see (see ModuleBuilder.support).
BUDGET_CHECKS = frozenset({"relay_time_up", "relay_memory_over", "relay_budget"})


def rt_field(b: ir.IRBuilder, rt: ir.Value, name: str) -> ir.Value:
    """A field of the runtime state `rt` points at."""
    return b.gep(rt, [I32(0), I32(RT_FIELDS.index(name))], inbounds=True)


def support_module(triple: str) -> ir.Module:
    return ModuleBuilder("relay_support", [], None, triple, set(), "").build_support()


def recursive_functions(group: list[Typed]) -> set[Signature]:
    """The functions of a group that can reach themselves through calls."""
    calls = {t.sig: set(t.calls.values()) for t in group}
    found = set()
    for sig in calls:
        seen, todo = set(), list(calls[sig])
        while todo:
            callee = todo.pop()
            if callee not in seen:
                seen.add(callee)
                todo.extend(calls.get(callee, ()))
        if sig in seen:
            found.add(sig)
    return found


def entry_name(sig: Signature, index: int, key: str) -> str:
    """The exported entry point of `sig`, function `index` of the module whose cache key is `key`:
    unique per module (two servers may each have a `work`), and across modules, since all modules
    of a process share one engine (engine._load)."""
    return f"entry_{sig.symbol}_{index}_{key[:16]}"


class ModuleBuilder:
    """Builds one LLVM module for a group of typed functions."""

    def __init__(self, name: str, group: list[Typed], res: Resolution | None, triple: str,
                 fastmath: set[Signature], key: str) -> None:
        self.res = res
        self.key = key
        self.typed = {t.sig: t for t in group}
        self.module = ir.Module(name)
        self.module.triple = triple
        self.group = group
        self.index = {t.sig: i for i, t in enumerate(group)}
        self.fastmath = fastmath
        tbaa_root = self.module.add_metadata([ir.MetaDataString(self.module, "relay arrays")])
        self.tbaa = {name: self.module.add_metadata([node, node, I64(0)]) for name, node in (
            (name, self.module.add_metadata([ir.MetaDataString(self.module, name), tbaa_root, I64(0)]))
            for name in ("header", "element", "runtime"))}
        self.functions: dict[Signature, ir.Function] = {}
        for t in group:
            # Hidden arguments first: the job's runtime state, and the call depth (a register, not
            # a field to update on every call).
            fnty = ir.FunctionType(LLVM_TYPES[t.ret], [RT_PTR, I64] + [LLVM_TYPES[p] for p in t.sig.params])
            fn = ir.Function(self.module, fnty, f"{t.sig.symbol}_{len(self.functions)}")  # names may repeat
            fn.linkage = "internal"  # only the entry wrappers are called from outside
            fn.attributes.add("nounwind")
            self.functions[t.sig] = fn
        self.externals: dict[str, ir.Function] = {}
        self.recursive = recursive_functions(group)

    def external(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.externals.get(name)
        if fn is None:
            fn = self.module.globals.get(name) or ir.Function(self.module, ir.FunctionType(ret, args), name)
            self.externals[name] = fn
        return fn

    def libm_pow(self) -> ir.Function:
        """C's pow, which the interpreter's math.pow calls: `nobuiltin` keeps LLVM from rewriting
        calls to it (8 ** x into exp2(3 * x), x ** 0.5 into sqrt), which would change last bits."""
        fn = self.external("pow", DOUBLE, [DOUBLE, DOUBLE])
        fn.attributes.add("nobuiltin")
        return fn

    def intrinsic(self, name: str, arity: int = 1) -> ir.Function:
        return self.external(f"{name}.f64", DOUBLE, [DOUBLE] * arity)

    def build(self) -> ir.Module:
        for t in self.group:
            FunctionLowerer(self, t).lower()
            self._entry_wrapper(t)
        return self.module

    def build_support(self) -> ir.Module:
        """The support module: every SUPPORT function, defined."""
        for _, method, _ in SUPPORT.values():
            getattr(self, method)()
        return self.module

    def support(self, name: str) -> ir.Function:
        """Support function `name`: declared here, defined in the support module.

        The budget checks are declared `inaccessiblememonly`: they touch nothing a caller
        holds, which lets array sizes and buffers stay in registers across a loop's tick
        check. (relay_fail and relay_unwind write the error record callers read: not them.)
        """
        fn = self.module.globals.get(name)
        if fn is None:
            fn = self._support_function(name)
            if name in BUDGET_CHECKS:
                fn.attributes.add("inaccessiblememonly")
        return fn

    def array_function(self, name: str) -> ir.Function:
        fn = self.module.globals.get(name)
        return fn if fn is not None else ir.Function(self.module, ARRAY_FUNCTIONS[name], name)

    def _support_function(self, name: str) -> ir.Function:
        fnty, _, cold = SUPPORT[name]
        fn = ir.Function(self.module, fnty, name)
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        if cold:
            fn.attributes.add("cold")
        return fn

    def _helper(self, name: str) -> tuple[ir.Function, ir.IRBuilder]:
        """Starts the definition of support function `name` (in the support module)."""
        fn = self._support_function(name)
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    def _fail_helper(self) -> ir.Function:
        """`relay_fail(code, fn, node, x, y)`: record an error in the runtime state."""
        fn, b = self._helper("relay_fail")
        rt = fn.args[0]
        for field, arg in zip(("err_code", "err_fn", "err_node", "err_x", "err_y"), fn.args[1:]):
            b.store(arg, rt_field(b, rt, field))
        b.ret_void()
        return fn

    def _unwind_helper(self) -> ir.Function:
        """`relay_unwind(fn, node)`: a callee failed; place an on-entry error here, else add a frame.

        Frames are (function, call node, repeats): a repeat of the last frame (recursion) only
        counts, so a deep recursion keeps its whole stack in a few entries.
        """
        fn, b = self._helper("relay_unwind")
        rt, fn_index, node = fn.args
        node_slot = rt_field(b, rt, "err_node")
        at_site = b.icmp_signed("==", b.load(node_slot), I64(-1))
        with b.if_then(at_site):  # the callee failed on entry: the error belongs to this call
            b.store(fn_index, rt_field(b, rt, "err_fn"))
            b.store(node, node_slot)
            b.ret_void()
        count_slot = rt_field(b, rt, "nframes")
        count = b.load(count_slot)
        frames = rt_field(b, rt, "frames")

        def slot(k: ir.Value, field: int) -> ir.Value:
            return b.gep(frames, [I32(0), b.add(b.mul(k, I64(3)), I64(field))])

        last = b.sub(count, I64(1))
        with b.if_then(b.and_(b.icmp_signed(">", count, I64(0)), b.icmp_signed("<=", count, I64(MAX_FRAMES)))):
            same = b.and_(b.icmp_signed("==", b.load(slot(last, 0)), fn_index),
                          b.icmp_signed("==", b.load(slot(last, 1)), node))
            with b.if_then(same):
                repeats = slot(last, 2)
                b.store(b.add(b.load(repeats), I64(1)), repeats)
                b.ret_void()
        with b.if_then(b.icmp_signed("<", count, I64(MAX_FRAMES))):
            b.store(fn_index, slot(count, 0))
            b.store(node, slot(count, 1))
            b.store(I64(1), slot(count, 2))
        b.store(b.add(count, I64(1)), count_slot)  # past MAX_FRAMES: counted, not kept
        b.ret_void()
        return fn

    def _budget_check(self) -> ir.Function:
        """`i64 relay_budget(rt)`: 0, or the error of the budget that ran out (time first, then memory).

        The first check of a call also lets go of the GIL: a call that reaches it runs long enough
        (65,536 loop iterations or recursive calls) for other threads to deserve the interpreter;
        shorter calls never pay for releasing and taking it back.
        """
        fn, b = self._helper("relay_budget")
        rt = fn.args[0]
        b.call(self.array_function("relay_gil_release"), [])
        with b.if_then(b.call(self.support("relay_time_up"), [rt]), likely=False):
            b.ret(I64(ERR_TIME))
        with b.if_then(b.call(self.support("relay_memory_over"), [rt, I64(0)]), likely=False):
            b.ret(I64(ERR_MEMORY_LIMIT))
        b.ret(I64(0))
        return fn

    def _clock_check(self) -> ir.Function:
        """`i1 relay_time_up()`: has the deadline passed (or a stop been requested)?"""
        fn, b = self._helper("relay_time_up")
        rt = fn.args[0]
        stop = b.load(rt_field(b, rt, "stop"))
        deadline = b.load(rt_field(b, rt, "deadline_ns"))
        check = fn.append_basic_block("check")
        done = fn.append_basic_block("done")
        stopped = b.icmp_unsigned("!=", stop, I64(0))
        no_deadline = b.icmp_unsigned("==", deadline, I64(0))
        b.cbranch(b.or_(stopped, no_deadline), done, check)
        b.position_at_end(check)
        ts = b.alloca(ir.ArrayType(I64, 2))
        clock = self.external("clock_gettime", I32, [I32, ts.type])
        b.call(clock, [I32(1), ts])  # CLOCK_MONOTONIC, as Python's time.monotonic_ns
        sec = b.load(b.gep(ts, [I32(0), I32(0)]))
        nsec = b.load(b.gep(ts, [I32(0), I32(1)]))
        now = b.add(b.mul(sec, I64(1_000_000_000)), nsec)
        late = b.icmp_signed(">=", now, deadline)
        b.branch(done)
        b.position_at_end(done)
        result = b.phi(I1)
        result.add_incoming(stopped, b.function.blocks[0])
        result.add_incoming(late, check)
        b.ret(result)
        return fn

    def _memory_check(self) -> ir.Function:
        """`i1 relay_memory_over(i64 extra)`: would `extra` more bytes pass the job's memory ceiling?

        Reads the resident size from /proc/self/statm (no Python, no GIL); false when the job
        has no ceiling or the file cannot be read.
        """
        fn, b = self._helper("relay_memory_over")
        rt, extra = fn.args
        no = fn.append_basic_block("no")
        read_bb = fn.append_basic_block("read")
        ceiling = b.load(rt_field(b, rt, "memory_ceiling"))
        b.cbranch(b.icmp_signed("==", ceiling, I64(0)), no, read_bb)
        b.position_at_end(no)
        b.ret(ir.Constant(I1, 0))
        b.position_at_end(read_bb)
        path = b"/proc/self/statm\0"
        text = ir.GlobalVariable(self.module, ir.ArrayType(I8, len(path)), "relay_statm_path")
        text.linkage = "internal"
        text.global_constant = True
        text.initializer = ir.Constant(ir.ArrayType(I8, len(path)), bytearray(path))
        opener = self.external("open", I32, [PTR, I32])
        fd = b.call(opener, [b.bitcast(text, PTR), I32(0)])
        opened = fn.append_basic_block("opened")
        b.cbranch(b.icmp_signed("<", fd, I32(0)), no, opened)
        b.position_at_end(opened)
        buf = b.bitcast(b.alloca(ir.ArrayType(I8, 64)), PTR)
        n = b.call(self.external("read", I64, [I32, PTR, I64]), [fd, buf, I64(63)])
        b.call(self.external("close", I32, [I32]), [fd])
        pages = self._statm_pages(b, buf, n)
        resident = b.mul(b.load(pages), b.load(rt_field(b, rt, "page_size")))
        b.ret(b.icmp_signed(">", b.add(resident, extra), ceiling))
        return fn

    def _statm_pages(self, b: ir.IRBuilder, buf: ir.Value, n: ir.Value) -> ir.AllocaInstr:
        """Emits the parse of statm's text (`n` bytes at `buf`): skips the first field and reads the
        second, the resident page count, into the slot it returns, leaving `b` after the parse.
        Text with no second field makes the function return false."""
        fn = b.function
        i = b.alloca(I64)
        pages = b.alloca(I64)
        b.store(I64(0), i)
        b.store(I64(0), pages)

        def char() -> ir.Value:
            return b.load(b.gep(buf, [b.load(i)]))

        skip_head, skip_body, digits_head, digits_body, done = (
            fn.append_basic_block(name) for name in ("skip.head", "skip.body", "digits.head", "digits.body", "done"))
        b.branch(skip_head)  # the first field (total size), up to a space
        b.position_at_end(skip_head)
        in_text = b.icmp_signed("<", b.load(i), n)
        with b.if_then(b.not_(in_text)):
            b.ret(ir.Constant(I1, 0))
        b.cbranch(b.icmp_unsigned("==", char(), I8(ord(" "))), digits_body, skip_body)
        b.position_at_end(skip_body)
        b.store(b.add(b.load(i), I64(1)), i)
        b.branch(skip_head)
        b.position_at_end(digits_body)  # past the space: the second field, resident pages
        b.store(b.add(b.load(i), I64(1)), i)
        b.branch(digits_head)
        b.position_at_end(digits_head)
        more = fn.append_basic_block("digits.more")
        b.cbranch(b.icmp_signed("<", b.load(i), n), more, done)
        b.position_at_end(more)
        c = char()
        digit = b.and_(b.icmp_unsigned(">=", c, I8(ord("0"))), b.icmp_unsigned("<=", c, I8(ord("9"))))
        add = fn.append_basic_block("digits.add")
        b.cbranch(digit, add, done)
        b.position_at_end(add)
        b.store(b.add(b.mul(b.load(pages), I64(10)), b.zext(b.sub(c, I8(ord("0"))), I64)), pages)
        b.branch(digits_body)
        b.position_at_end(done)
        return pages

    def _entry_wrapper(self, t: Typed) -> None:
        """A C-friendly entry point (runtime state first, bools as i8) for the ctypes trampoline,
        which calls it with the GIL held and gets it back held.

        It first checks that every array argument is of the numbers kind (one load each); if
        one is not, it reports ERR_ARGUMENT_TYPE and runs nothing, so the caller can hand the
        call to the interpreter. It pins the array arguments for the call (see _array.c: no
        other thread may resize them while this code may run without the GIL), checks the
        native stack for the functions that do not check it themselves (those that call no
        other), runs the body, and takes the GIL back (the first budget check let it go).
        """
        inner = self.functions[t.sig]
        ret = I8 if t.ret in (BOOL, NULL) else LLVM_TYPES[t.ret]
        args = [I8 if p == BOOL else LLVM_TYPES[p] for p in t.sig.params]
        fn = ir.Function(self.module, ir.FunctionType(ret, [RT_PTR, *args]), entry_name(t.sig, self.index[t.sig], self.key))
        fn.attributes.add("nounwind")
        b = ir.IRBuilder(fn.append_basic_block())
        rt, params = fn.args[0], fn.args[1:]
        inner_ret = LLVM_TYPES[t.ret]
        failed_value = ir.Constant(PTR, None) if t.ret == ARR else ir.Constant(inner_ret, 0)
        arrays = [arg for arg, p in zip(params, t.sig.params) if p == ARR]

        for arr in arrays:
            kind = b.load(b.bitcast(b.gep(arr, [I64(ARRAY_KIND)]), I64.as_pointer()))
            with b.if_then(b.icmp_signed("!=", kind, I64(NUMBERS_KIND)), likely=False):
                b.store(I64(ERR_ARGUMENT_TYPE), rt_field(b, rt, "err_code"))
                b.ret(self._none(b) if t.ret == ARR else ir.Constant(ret, 0))  # nothing ran
        for arr in arrays:
            b.call(self.array_function("relay_array_pin"), [arr, rt])
        passed = [b.trunc(a, I1) if p == BOOL else a for a, p in zip(params, t.sig.params)]
        depth = b.add(b.load(rt_field(b, rt, "depth")), I64(1))
        done = fn.append_basic_block("done")
        run = fn.append_basic_block("run")
        stack_full_block = None
        if not t.calls:  # a function that calls others checks the stack itself (FunctionLowerer.prologue)
            frame = b.alloca(I8)
            stack_full = b.icmp_unsigned("<", b.ptrtoint(frame, I64), b.load(rt_field(b, rt, "stack_limit")))
            with b.if_then(stack_full, likely=False):
                b.call(self.support("relay_fail"), [rt, I64(ERR_STACK), I64(self.index[t.sig]), I64(-1),
                                                    ir.Constant(DOUBLE, 0.0), depth])
                stack_full_block = b.block
                b.branch(done)
        b.branch(run)
        b.position_at_end(run)
        value = b.call(inner, [rt, depth, *passed], attrs=("noinline",))  # one copy of the body, not two
        b.branch(done)
        b.position_at_end(done)
        result = b.phi(inner_ret)
        result.add_incoming(value, run)
        if stack_full_block is not None:
            result.add_incoming(failed_value, stack_full_block)
        b.call(self.array_function("relay_gil_reacquire"), [])
        for arr in arrays:
            b.call(self.array_function("relay_array_unpin"), [arr, rt])
        if t.ret == ARR:  # after an error the array is NULL, which ctypes must never see: give it None
            with b.if_then(b.icmp_unsigned("==", result, ir.Constant(PTR, None)), likely=False):
                b.ret(self._none(b))
        b.ret(b.zext(result, I8) if t.ret == BOOL else result)

    def _none(self, b: ir.IRBuilder) -> ir.Value:
        """A new reference to None."""
        none = self.module.globals.get("_Py_NoneStruct") or ir.GlobalVariable(self.module, I8, "_Py_NoneStruct")
        b.call(self.external("Py_IncRef", ir.VoidType(), [PTR]), [none])
        return none


class FunctionLowerer:
    def __init__(self, mb: ModuleBuilder, typed: Typed) -> None:
        self.mb = mb
        self.t = typed
        self.fn = mb.functions[typed.sig]
        self.fn_index = mb.index[typed.sig]
        self.ordinals = {id(n): k for k, n in enumerate_nodes(typed.sig.fn).items()}
        self.flags = ("fast",) if typed.sig in mb.fastmath else ()
        self.bad_return = not annotation_holds(typed.sig.fn.ret_type, typed.ret)  # every return fails
        self.vars: dict[object, ir.AllocaInstr] = {}
        self.loops: list[tuple[ir.Block, ir.Block]] = []  # (continue target, break target)
        self.loop_nodes: list[Node] = []  # the loops around the code being lowered, innermost last
        self.owned_arrays: list[ir.AllocaInstr] = []  # slots released at the exit: variables and temporaries
        assert mb.res is not None  # None only for the support module, which lowers no Relay function
        self.res = mb.res
        self.provable = provable_loops(typed, self.res)
        self.trusted: dict[tuple[Decl, Decl], Callable[[], ir.Value]] = {}  # (array, index var) -> its i64 index
        self.failing: tuple[ir.Block, list[ir.PhiInstr]] | None = None  # the block every failure jumps to
        self.scoped: dict[Decl, tuple[ir.Value, ir.Value]] = {}  # array -> alias metadata, in an unchecked loop

    # ------------------------------------------------------------ structure

    def lower(self) -> None:
        fn = self.fn
        entry = fn.append_basic_block("entry")
        self.b = b = ir.IRBuilder(entry)
        self.exit = fn.append_basic_block("exit")
        self.retval = b.alloca(LLVM_TYPES[self.t.ret], name="retval")
        b.store(ZERO[self.t.ret], self.retval)
        for decl, typ in self.t.locals.items():
            slot = b.alloca(LLVM_TYPES[typ], name=decl.name)
            self.vars[decl] = slot
            if typ == ARR:  # released at the exit: null until assigned
                b.store(ZERO[typ], slot)
                self.owned_arrays.append(slot)
            # Numbers and bools are never read before their `let` (names resolve to declarations that
            # precede them): storing a zero first would give every variable two definitions and make
            # promoting them to registers (SROA) quadratic in the function's length.
        params = [self.res.local(p).decl for p in self.t.sig.fn.params]
        self.rt = fn.args[0]
        self.depth = fn.args[1]
        self.ticks = b.alloca(I64, name="ticks")  # loop iterations of this call, all loops together
        b.store(I64(0), self.ticks)
        self.frame_mark = b.alloca(I8, name="frame")  # its address places this frame on the native stack
        for arg, decl, typ in zip(fn.args[2:], params, self.t.sig.params):
            if typ == ARR:
                self.incref(arg)
            b.store(arg, self.vars[decl])
        self.prologue()
        self.body(self.t.sig.fn.body.stmts)
        if not b.block.is_terminated:  # the implicit `return null` at the end
            if self.bad_return:
                self.fail(ERR_RETURN_TYPE, None, at=AT_CALLER)
            else:
                b.branch(self.exit)
        b.position_at_end(self.exit)
        for slot in self.owned_arrays:
            self.decref(b.load(slot))
        b.ret(b.load(self.retval))
        for block in fn.blocks:  # blocks left behind after a jump (break, return, error) are dead
            if not block.is_terminated:
                b.position_at_end(block)
                b.unreachable()

    def prologue(self) -> None:
        """The depth limit, checked on every call as the interpreter does; the native stack in
        every function that calls others (a leaf's frame fits the margin its caller checked);
        a tick only in functions that can recurse (loops tick on their own, and without
        recursion or loops the work of a call is bounded)."""
        b = self.b
        too_deep = b.icmp_signed(">", self.depth, self.rt_load("max_depth"))
        with b.if_then(too_deep, likely=False):
            self.fail(ERR_DEPTH, None)
        if self.t.calls:
            stack_full = b.icmp_unsigned("<", b.ptrtoint(self.frame_mark, I64), self.rt_load("stack_limit"))
            with b.if_then(stack_full, likely=False):
                self.fail(ERR_STACK, None, y=self.depth)
        if self.t.sig not in self.mb.recursive:
            return
        n = b.add(self.rt_load("ticks"), I64(1))
        b.store(n, rt_field(b, self.rt, "ticks")).set_metadata("tbaa", self.mb.tbaa["runtime"])
        self.tick_check(n, self.t.sig.fn)

    def rt_load(self, name: str) -> ir.Value:
        """A field of the runtime state; its TBAA tag tells LLVM array elements never overlap it."""
        value = self.b.load(rt_field(self.b, self.rt, name))
        value.set_metadata("tbaa", self.mb.tbaa["runtime"])
        return value

    def tick_check(self, counter: ir.Value, node: Node) -> None:
        b = self.b
        due = b.icmp_unsigned("==", b.and_(counter, I64(TICK_MASK)), I64(0))
        with b.if_then(due, likely=False):
            code = b.call(self.mb.support("relay_budget"), [self.rt])
            with b.if_then(b.icmp_unsigned("!=", code, I64(0)), likely=False):
                self.fail(code, node)

    def fail(self, code: int | ir.Value, node: Node | None, x: ir.Value | None = None, y: ir.Value | None = None,
             at: int = -1) -> None:
        """Records an error (node None: at the call site, or where `at` says) and leaves the function.

        Every failure of a function jumps to one block that calls relay_fail: one call
        instead of one per check keeps small functions cheap enough for LLVM to inline.
        """
        b = self.b
        if self.failing is None:
            here = b.block
            block = self.fn.append_basic_block("fail")
            b.position_at_end(block)
            phis = [b.phi(I64), b.phi(I64), b.phi(DOUBLE), b.phi(I64)]
            code_phi, node_phi, x_phi, y_phi = phis
            b.call(self.mb.support("relay_fail"), [self.rt, code_phi, I64(self.fn_index), node_phi, x_phi, y_phi])
            b.branch(self.exit)
            self.failing = (block, phis)
            b.position_at_end(here)
        block, phis = self.failing
        values = (I64(code) if isinstance(code, int) else code, I64(at if node is None else self.ordinals[id(node)]),
                  x if x is not None else ir.Constant(DOUBLE, 0.0), y if y is not None else I64(0))
        for phi, value in zip(phis, values):
            phi.add_incoming(value, b.block)
        b.branch(block)
        b.position_at_end(self.fn.append_basic_block("dead"))

    def after_call(self, call: Node) -> None:
        """Propagates an error raised by a callee, recording this call site."""
        b = self.b
        code = self.rt_load("err_code")
        with b.if_then(b.icmp_unsigned("!=", code, I64(0)), likely=False):
            b.call(self.mb.support("relay_unwind"), [self.rt, I64(self.fn_index), I64(self.ordinals[id(call)])])
            b.branch(self.exit)
            b.position_at_end(self.fn.append_basic_block("dead"))

    # ------------------------------------------------------------ refcounts

    def incref(self, obj: ir.Value) -> None:
        self.b.call(self.mb.array_function("relay_array_incref"), [obj])

    def decref(self, obj: ir.Value) -> None:
        self.b.call(self.mb.array_function("relay_array_decref"), [obj])

    def own(self, obj: ir.Value) -> ir.AllocaInstr:
        """Gives a new array reference an owner: a frame slot (null until now) that every exit releases."""
        b = self.b
        here = b.block
        b.position_at_start(self.fn.blocks[0])
        slot = b.alloca(PTR, name="owned")
        b.store(ir.Constant(PTR, None), slot)
        b.position_at_end(here)
        self.owned_arrays.append(slot)
        b.store(obj, slot)
        return slot

    def release(self, value: ir.Value, owner: Owner) -> None:
        """Drops an owned reference (a borrowed one, owner None, needs nothing)."""
        if owner is not None:
            self.decref(value)
            self.disown(owner)

    def disown(self, owner: Owner) -> None:
        """The reference has moved elsewhere (a variable, the return value): the slot lets go."""
        if owner is not None:
            self.b.store(ir.Constant(PTR, None), owner)

    # ------------------------------------------------------------ statements

    def body(self, stmts: tuple[Stmt, ...]) -> None:
        for s in stmts[:-1]:
            self.stmt(s)
        if stmts:
            self.tail(stmts[-1])

    def tail(self, s: Stmt) -> None:
        if isinstance(s, ExprStmt):
            self.emit_return(s.expr, s)
        elif isinstance(s, If):
            self.if_stmt(s, tail=True)
        else:
            self.stmt(s)

    def block(self, block: Block, tail: bool = False) -> None:
        stmts = block.stmts
        for s in stmts[:-1] if tail else stmts:
            if self.b.block.is_terminated:
                return
            self.stmt(s)
        if tail and stmts and not self.b.block.is_terminated:
            self.tail(stmts[-1])

    def emit_return(self, value: Expr | None, node: Stmt) -> None:
        b = self.b
        if self.bad_return:  # the value is computed, then the annotation fails, as in the interpreter
            if value is not None:
                self.release(*self.expr(value))
            self.fail(ERR_RETURN_TYPE, node)
            return
        if value is not None and self.t.ret != NULL:
            v, owner = self.expr(value)
            if self.t.ret == ARR and owner is None:
                self.incref(v)
            self.disown(owner)
            b.store(v, self.retval)
        elif value is not None:
            v, owner = self.expr(value)
            self.release(v, owner)
        b.branch(self.exit)
        b.position_at_end(self.fn.append_basic_block("after_return"))

    def stmt(self, s: Stmt) -> None:
        if self.b.block.is_terminated:
            return
        match s:
            case ExprStmt():
                v, owner = self.expr(s.expr)
                self.release(v, owner)
            case Let():
                self.store_var(self.res.local(s).decl, s.value)
            case Assign():
                self.assign(s)
            case If():
                self.if_stmt(s)
            case While():
                self.while_stmt(s)
            case ForRange():
                self.for_range(s)
            case ForEach():
                self.for_each(s)
            case Break():
                self.b.branch(self.loops[-1][1])
                self.b.position_at_end(self.fn.append_basic_block("after_break"))
            case Continue():
                self.b.branch(self.loops[-1][0])
                self.b.position_at_end(self.fn.append_basic_block("after_continue"))
            case Return():
                self.emit_return(s.value, s)
            case FnDecl() | ServerDecl():  # pragma: no cover - the typer lets none through
                raise AssertionError(f"cannot lower {type(s).__name__}")
            case _:
                assert_never(s)

    def store_var(self, decl: Decl, value: Expr) -> None:
        v, owner = self.expr(value)
        self.store_value(decl, v, owner)

    def store_value(self, decl: Decl, v: ir.Value, owner: Owner) -> None:
        slot = self.vars[decl]
        if self.t.locals[decl] == ARR:
            if owner is None:
                self.incref(v)
            self.disown(owner)
            old = self.b.load(slot)
            self.b.store(v, slot)
            self.decref(old)
        else:
            self.b.store(v, slot)

    def assign(self, s: Assign) -> None:
        target = s.target
        op = s.op[0] if s.op != "=" else None
        if isinstance(target, Name):
            decl = self.res.local(target).decl
            if op is None:
                self.store_var(decl, s.value)
            else:
                current = self.b.load(self.vars[decl])
                rhs, _ = self.expr(s.value)
                self.b.store(self.arith(op, current, rhs), self.vars[decl])
            return
        assert isinstance(target, Index)
        arr, arr_owner = self.expr(target.obj)
        idx, _ = self.expr(target.index)
        if op is None:  # as in the interpreter: the value is computed before the index is checked
            value, _ = self.expr(s.value)
            k = self.index_of(target, arr, idx)
        else:
            k = self.index_of(target, arr, idx)
            current = self.load_item(arr, k, target.obj)
            rhs, _ = self.expr(s.value)
            value = self.arith(op, current, rhs)
        self.store_item(arr, k, value, target.obj)
        self.release(arr, arr_owner)

    def truth(self, e: Expr) -> ir.Value:
        v, _ = self.expr(e)
        return v

    def if_stmt(self, s: If, tail: bool = False) -> None:
        b = self.b
        cond = self.truth(s.cond)
        then_bb = self.fn.append_basic_block("then")
        else_bb = self.fn.append_basic_block("else")
        end_bb = self.fn.append_basic_block("endif")
        b.cbranch(cond, then_bb, else_bb)
        b.position_at_end(then_bb)
        self.block(s.then, tail)
        if not b.block.is_terminated:
            b.branch(end_bb)
        b.position_at_end(else_bb)
        if isinstance(s.orelse, Block):
            self.block(s.orelse, tail)
        elif s.orelse is not None:
            if tail:
                self.tail(s.orelse)
            else:
                self.stmt(s.orelse)
        if not b.block.is_terminated:
            b.branch(end_bb)
        b.position_at_end(end_bb)

    def loop(self, name: str, node: Node, head: Callable[[], ir.Value], body_fn: Callable[[], None],
             step_fn: Callable[[], None] | None = None) -> None:
        """A loop counted in the function's tick counter: head() returns the continue-condition."""
        b = self.b
        head_bb = self.fn.append_basic_block(f"{name}.head")
        body_bb = self.fn.append_basic_block(f"{name}.body")
        step_bb = self.fn.append_basic_block(f"{name}.step")
        end_bb = self.fn.append_basic_block(f"{name}.end")
        b.branch(head_bb)
        b.position_at_end(head_bb)
        b.cbranch(head(), body_bb, end_bb)
        b.position_at_end(body_bb)
        self.loops.append((step_bb, end_bb))
        self.loop_nodes.append(node)
        body_fn()
        self.loop_nodes.pop()
        self.loops.pop()
        if not b.block.is_terminated:
            b.branch(step_bb)
        b.position_at_end(step_bb)
        if step_fn is not None:
            step_fn()
        n = b.add(b.load(self.ticks), I64(1))
        b.store(n, self.ticks)
        self.tick_check(n, node)
        b.branch(head_bb)
        b.position_at_end(end_bb)

    def entry_alloca(self, typ: ir.Type, name: str) -> ir.AllocaInstr:
        """An alloca in the entry block, where mem2reg can promote it."""
        b = self.b
        here = b.block
        entry = self.fn.blocks[0]
        b.position_at_start(entry)
        slot = b.alloca(typ, name=name)
        b.position_at_end(here)
        return slot

    def while_stmt(self, s: While) -> None:
        self.loop("while", s, lambda: self.truth(s.cond), lambda: self.block(s.body))

    def for_range(self, s: ForRange) -> None:
        b = self.b
        start, _ = self.expr(s.start)
        end, _ = self.expr(s.end)
        proof = self.provable.get(s)
        if proof is None:
            self.counted_loop(s, start, end, None)
            return
        fast_bb = self.fn.append_basic_block("for.unchecked")
        checked_bb = self.fn.append_basic_block("for.checked")
        done_bb = self.fn.append_basic_block("for.done")
        b.cbranch(self.proven(proof, start, end), fast_bb, checked_bb)
        for block, unchecked in ((fast_bb, proof), (checked_bb, None)):
            b.position_at_end(block)
            self.counted_loop(s, start, end, unchecked)
            b.branch(done_bb)
        b.position_at_end(done_bb)

    def proven(self, proof: Provable, start: ir.Value, end: ir.Value) -> ir.Value:
        """Whether every index of `proof` is whole and in range on every iteration (see bounds.py)."""
        b = self.b
        zero = ir.Constant(DOUBLE, 0.0)

        def whole(v: ir.Value) -> ir.Value:  # and below 2**53, where fptosi is exact
            in_range = b.and_(b.fcmp_ordered(">=", v, zero), b.fcmp_ordered("<", v, ir.Constant(DOUBLE, 2.0 ** 53)))
            return b.and_(in_range, b.fcmp_ordered("==", b.call(self.mb.intrinsic("llvm.floor"), [v]), v))

        ok = whole(start)
        pointers = [b.load(self.vars[arr]) for arr in proof.arrays]
        for k, p in enumerate(pointers):  # distinct objects: the unchecked copy tells LLVM they never overlap
            for q in pointers[k + 1:]:
                ok = b.and_(ok, b.icmp_unsigned("!=", p, q))
        for arr_decl, index_decl in proof.pairs:
            n = b.sitofp(self.length(b.load(self.vars[arr_decl])), DOUBLE)
            if index_decl is proof.loop_var:
                ok = b.and_(ok, b.fcmp_ordered("<=", end, n))
            else:
                v = b.load(self.vars[index_decl])
                ok = b.and_(ok, b.and_(whole(v), b.fcmp_ordered("<", v, n)))
        return ok

    def counted_loop(self, s: ForRange, start: ir.Value, end: ir.Value, unchecked: Provable | None) -> None:
        """The loop; with `unchecked`, its proven indexes skip their checks and count in an i64."""
        b = self.b
        k = self.entry_alloca(DOUBLE, "k")
        b.store(ir.Constant(DOUBLE, 0.0), k)
        var = self.vars[self.res.local(s).decl]
        if unchecked is not None:
            self.scoped = self.alias_scopes(s, unchecked)
            ki = self.entry_alloca(I64, "ki")
            b.store(I64(0), ki)
            first = b.fptosi(start, I64)
            for arr_decl, index_decl in unchecked.pairs:
                if index_decl is unchecked.loop_var:
                    self.trusted[arr_decl, index_decl] = lambda: b.add(first, b.load(ki))
                else:
                    self.trusted[arr_decl, index_decl] = self.whole_value(self.vars[index_decl])

        def head() -> ir.Value:
            value = b.fadd(start, b.load(k))  # i = start + k while start + k < end
            b.store(value, var)
            return b.fcmp_ordered("<", value, end)

        def step() -> None:
            b.store(b.fadd(b.load(k), ir.Constant(DOUBLE, 1.0)), k)
            if unchecked is not None:
                b.store(b.add(b.load(ki), I64(1)), ki)

        self.loop("for", s, head, lambda: self.block(s.body), step)
        self.trusted.clear()
        self.scoped = {}

    def whole_value(self, slot: ir.AllocaInstr) -> Callable[[], ir.Value]:
        """The i64 value of the number in slot (proven whole), loaded where it is used."""
        return lambda: self.b.fptosi(self.b.load(slot), I64)

    def alias_scopes(self, s: ForRange, proof: Provable) -> dict[Decl, tuple[ir.Value, ir.Value]]:
        """Per array of the proof: (its scope list, the other arrays' scopes), for `alias.scope` and
        `noalias` on its element accesses in the unchecked loop, which runs only when the arrays are
        distinct objects. Declared in the loop's preheader, so LLVM clones them when it copies the loop."""
        arrays = proof.arrays
        if len(arrays) < 2:
            return {}
        module = self.mb.module
        name = f"{self.fn.name} loop {self.ordinals[id(s)]}"
        domain = module.add_metadata([ir.MetaDataString(module, name)])
        scopes = [module.add_metadata([ir.MetaDataString(module, f"{name} {arr.name}#{k}"), domain])
                  for k, arr in enumerate(arrays)]
        declare = self.mb.external("llvm.experimental.noalias.scope.decl", ir.VoidType(), [ir.MetaDataType()])
        found = {}
        for k, arr in enumerate(arrays):
            own = module.add_metadata([scopes[k]])
            self.b.call(declare, [own])
            found[arr] = (own, module.add_metadata([sc for j, sc in enumerate(scopes) if j != k]))
        return found

    def for_each(self, s: ForEach) -> None:
        """The loop holds a reference to the list it walks until it ends, however it ends."""
        b = self.b
        arr, owner = self.expr(s.iterable)
        if self.t.writes_arrays.get(s, True):  # iterate a snapshot, as the interpreter does
            self.count_allocation(b.mul(self.length(arr), I64(8)), s)
            snapshot = b.call(self.mb.array_function("relay_array_copy"), [arr])
            self.release(arr, owner)
            arr, owner = snapshot, self.own(snapshot)
            self.check_alloc(snapshot, s)
        elif owner is None:  # the body may rebind the variable that holds the list
            self.incref(arr)
            owner = self.own(arr)
        n = self.length(arr)
        i = self.entry_alloca(I64, "i")
        b.store(I64(0), i)
        var = self.vars[self.res.local(s).decl]

        def head() -> ir.Value:
            return b.icmp_signed("<", b.load(i), n)

        def body() -> None:
            b.store(self.load_item(arr, b.load(i)), var)
            self.block(s.body)

        def step() -> None:
            b.store(b.add(b.load(i), I64(1)), i)

        self.loop("each", s, head, body, step)
        self.release(arr, owner)

    # ------------------------------------------------------------ arrays

    def field_ptr(self, obj: ir.Value, offset: int, typ: ir.Type) -> ir.Value:
        b = self.b
        return b.bitcast(b.gep(obj, [I64(offset)], inbounds=True), typ.as_pointer())

    def header(self, arr: ir.Value, offset: int, typ: ir.Type) -> ir.Value:
        value = self.b.load(self.field_ptr(arr, offset, typ))
        value.set_metadata("tbaa", self.mb.tbaa["header"])
        return value

    def length(self, arr: ir.Value) -> ir.Value:
        return self.header(arr, ARRAY_SIZE, I64)

    def element(self, arr: ir.Value, k: ir.Value) -> ir.Value:
        """The address of element k (already checked) of a numbers array."""
        return self.b.gep(self.header(arr, ARRAY_ITEMS, DOUBLE.as_pointer()), [k], inbounds=True)

    def load_item(self, arr: ir.Value, k: ir.Value, obj: Expr | None = None) -> ir.Value:
        value = self.b.load(self.element(arr, k))
        self.tag_element(value, obj)
        return value

    def store_item(self, arr: ir.Value, k: ir.Value, value: ir.Value, obj: Expr | None = None) -> None:
        self.tag_element(self.b.store(value, self.element(arr, k)), obj)

    def tag_element(self, access: ir.Instruction, obj: Expr | None) -> None:
        """TBAA, and the alias scopes of the unchecked loop when `obj` names one of its arrays."""
        access.set_metadata("tbaa", self.mb.tbaa["element"])
        decl = self.declared(obj) if obj is not None else None
        scopes = self.scoped.get(decl) if decl is not None else None
        if scopes is not None:
            access.set_metadata("alias.scope", scopes[0])
            access.set_metadata("noalias", scopes[1])

    def count_allocation(self, size: ir.Value, node: Node) -> None:
        """Counts `size` more bytes of arrays; past ALLOCATION_CHECK since the last check, checks
        the budgets first: the memory one with this block included (its error placed at `node`,
        where the interpreter reserves the block), then the clock. A loop or a recursion whose
        steps allocate is stopped by what it allocates, not only by its iteration count (a
        million-element array per iteration passed a 1 s limit by 20 s)."""
        b = self.b
        slot = rt_field(b, self.rt, "allocated")
        total = b.add(self.rt_load("allocated"), size)
        with b.if_else(b.icmp_signed(">", total, I64(ALLOCATION_CHECK)), likely=False) as (check, count):
            with check:
                b.store(I64(0), slot).set_metadata("tbaa", self.mb.tbaa["runtime"])
                with b.if_then(b.call(self.mb.support("relay_memory_over"), [self.rt, size]), likely=False):
                    self.fail(ERR_MEMORY_LIMIT, node)
                code = b.call(self.mb.support("relay_budget"), [self.rt])
                with b.if_then(b.icmp_unsigned("!=", code, I64(0)), likely=False):
                    self.fail(code, self.stop_node())
            with count:
                b.store(total, slot).set_metadata("tbaa", self.mb.tbaa["runtime"])

    def stop_node(self) -> Node:
        """Where the interpreter notices a stop: the innermost loop, else the function."""
        return self.loop_nodes[-1] if self.loop_nodes else self.t.sig.fn

    def check_alloc(self, obj: ir.Value, node: Node) -> None:
        with self.b.if_then(self.b.icmp_unsigned("==", obj, ir.Constant(PTR, None)), likely=False):
            self.fail(ERR_MEMORY, node)

    def index_of(self, e: Index, arr: ir.Value, idx: ir.Value) -> ir.Value:
        """The i64 index of e: unchecked where the loop proved it (see bounds.py), else checked."""
        arr_decl, index_decl = self.declared(e.obj), self.declared(e.index)
        proven = self.trusted.get((arr_decl, index_decl)) if arr_decl is not None and index_decl is not None else None
        return proven() if proven is not None else self.checked_index(arr, idx, e)

    def declared(self, e: Expr) -> Decl | None:
        return name_decl(e, self.res)

    def checked_index(self, arr: ir.Value, idx: ir.Value, node: Node) -> ir.Value:
        """The i64 index, after the interpreter's checks: integral and 0 <= i < len."""
        b = self.b
        n = self.length(arr)
        in_range = b.and_(b.fcmp_ordered(">=", idx, ir.Constant(DOUBLE, 0.0)),
                          b.fcmp_ordered("<", idx, b.sitofp(n, DOUBLE)))
        ok_bb = self.fn.append_basic_block("index.ok")
        bad_bb = self.fn.append_basic_block("index.bad")
        check_bb = self.fn.append_basic_block("index.integral")
        b.cbranch(in_range, check_bb, bad_bb)
        b.position_at_end(check_bb)
        k = b.fptosi(idx, I64)
        b.cbranch(b.fcmp_ordered("==", b.sitofp(k, DOUBLE), idx), ok_bb, bad_bb)
        b.position_at_end(bad_bb)
        self.fail(ERR_INDEX, node, idx, n)
        b.position_at_end(ok_bb)
        return k

    def allocate(self, n: ir.Value, node: Node) -> tuple[ir.Value, Owner]:
        """A new numbers array of n zeros, owned by a frame slot."""
        arr = self.b.call(self.mb.array_function("relay_array_new"), [n])
        owner = self.own(arr)
        self.check_alloc(arr, node)
        return arr, owner

    def new_array(self, values: list[ir.Value], node: Node) -> tuple[ir.Value, Owner]:
        arr, owner = self.allocate(I64(len(values)), node)
        for k, v in enumerate(values):
            self.store_item(arr, I64(k), v)
        return arr, owner

    def filled_array(self, count: ir.Value, fill: ir.Value, node: Node) -> tuple[ir.Value, Owner]:
        """array(n, v)."""
        b = self.b
        ok = b.and_(b.and_(b.fcmp_ordered(">=", count, ir.Constant(DOUBLE, 0.0)),
                           b.fcmp_ordered("<", count, ir.Constant(DOUBLE, float("inf")))),  # inf is not whole
                    b.fcmp_ordered("==", b.call(self.mb.intrinsic("llvm.floor"), [count]), count))
        with b.if_then(b.not_(ok), likely=False):
            self.fail(ERR_ARRAY_SIZE, node, count)
        with b.if_then(b.fcmp_ordered(">", count, ir.Constant(DOUBLE, MAX_ARRAY)), likely=False):
            self.fail(ERR_ARRAY_BUDGET, node, count)
        n = b.fptosi(count, I64)
        self.count_allocation(b.mul(n, I64(8)), node)
        arr, owner = self.allocate(n, node)
        i = self.entry_alloca(I64, "fill")
        b.store(I64(0), i)
        head = self.fn.append_basic_block("fill.head")
        body = self.fn.append_basic_block("fill.body")
        end = self.fn.append_basic_block("fill.end")
        b.branch(head)
        b.position_at_end(head)
        b.cbranch(b.icmp_signed("<", b.load(i), n), body, end)
        b.position_at_end(body)
        self.store_item(arr, b.load(i), fill)
        b.store(b.add(b.load(i), I64(1)), i)
        b.branch(head)
        b.position_at_end(end)
        return arr, owner

    def push(self, arr: ir.Value, value: ir.Value, node: Node) -> ir.Value:
        """In place while the buffer has room and no other thread's compiled code holds the array;
        the extension grows it, or refuses when another thread holds it."""
        b = self.b
        n = self.length(arr)
        room = b.icmp_signed("<", n, self.header(arr, ARRAY_CAPACITY, I64))
        pins = self.header(arr, ARRAY_PINS, I64)
        alone = b.and_(b.icmp_unsigned("==", self.header(arr, ARRAY_PIN_OWNER, PTR), b.bitcast(self.rt, PTR)),
                       b.icmp_signed("==", self.header(arr, ARRAY_OWNER_PINS, I64), pins))
        mine = b.or_(b.icmp_signed("==", pins, I64(0)), alone)
        with b.if_else(b.and_(room, mine), likely=True) as (room, grow):
            with room:
                self.store_item(arr, n, value)
                b.store(b.add(n, I64(1)), self.field_ptr(arr, ARRAY_SIZE, I64)).set_metadata("tbaa", self.mb.tbaa["header"])
            with grow:  # the buffer grows by an eighth: count the whole array, amortised over its pushes
                # (the interpreter's push reserves nothing: its memory watch stops the job as a stop)
                self.count_allocation(b.mul(n, I64(8)), self.stop_node())
                status = b.call(self.mb.array_function("relay_array_push"), [arr, value, self.rt])
                with b.if_then(b.icmp_signed("!=", status, I32(0)), likely=False):
                    busy = b.icmp_signed("==", status, I32(-2))
                    self.fail(b.select(busy, I64(ERR_ARRAY_BUSY), I64(ERR_MEMORY)), node)
        return b.sitofp(self.length(arr), DOUBLE)

    # ------------------------------------------------------------ expressions

    def expr(self, e: Expr) -> tuple[ir.Value, Owner]:
        """The value of e, and the slot owning it when it is an array reference this code owns."""
        b = self.b
        match e:
            case Num():
                return ir.Constant(DOUBLE, e.value), None
            case Bool():
                return ir.Constant(I1, int(e.value)), None
            case Name():
                return b.load(self.vars[self.res.local(e).decl]), None
            case Binary():
                return self.binary(e), None
            case Logical():
                return self.logical(e), None
            case Unary():
                v, _ = self.expr(e.operand)
                return (b.fneg(v) if e.op == "-" else b.not_(v)), None
            case Index():
                arr, owner = self.expr(e.obj)
                idx, _ = self.expr(e.index)
                value = self.load_item(arr, self.index_of(e, arr, idx), e.obj)
                self.release(arr, owner)
                return value, None
            case ArrayLit():
                values = [self.expr(item)[0] for item in e.items]
                return self.new_array(values, e)
            case Call():
                return self.call(e)
            case MethodCall():
                arr, owner = self.expr(e.obj)
                value, _ = self.expr(e.args[0])
                n = self.push(arr, value, e)
                self.release(arr, owner)
                return n, None
            case Str() | Null() | StateRef() | SelfRef() | MapLit() | Range() | Field() | FnLit() | IfExpr():  # pragma: no cover
                raise AssertionError(f"cannot lower {type(e).__name__}")  # the typer lets none through
            case _:
                assert_never(e)

    def arith(self, op: str, a: ir.Value, c: ir.Value) -> ir.Value:
        b = self.b
        if op == "+":
            return b.fadd(a, c, flags=self.flags)
        if op == "-":
            return b.fsub(a, c, flags=self.flags)
        if op == "*":
            return b.fmul(a, c, flags=self.flags)
        if op == "/":
            return b.fdiv(a, c, flags=self.flags)
        if op == "%":
            return b.frem(a, c, flags=self.flags)
        return b.call(self.mb.libm_pow(), [a, c])

    def binary(self, e: Binary) -> ir.Value:
        b = self.b
        left, _ = self.expr(e.left)
        right, _ = self.expr(e.right)
        if e.op in FCMP:
            if self.t.exprs[e.left] == NULL:  # null == null
                return ir.Constant(I1, int(e.op == "=="))
            if self.t.exprs[e.left] == BOOL:
                return b.icmp_unsigned(e.op, left, right)
            if e.op == "!=":
                return b.fcmp_unordered("!=", left, right)
            return b.fcmp_ordered(FCMP[e.op], left, right)
        return self.arith(e.op, left, right)

    def logical(self, e: Logical) -> ir.Value:
        b = self.b
        left, _ = self.expr(e.left)
        start = b.block
        rhs_bb = self.fn.append_basic_block("logic.rhs")
        end_bb = self.fn.append_basic_block("logic.end")
        if e.op == "&&":
            b.cbranch(left, rhs_bb, end_bb)
        else:
            b.cbranch(left, end_bb, rhs_bb)
        b.position_at_end(rhs_bb)
        right, _ = self.expr(e.right)
        rhs_end = b.block
        b.branch(end_bb)
        b.position_at_end(end_bb)
        phi = b.phi(I1)
        phi.add_incoming(left, start)
        phi.add_incoming(right, rhs_end)
        return phi

    def call(self, e: Call) -> tuple[ir.Value, Owner]:
        b = self.b
        sig = self.t.calls.get(e)
        if sig is not None:
            args = [self.expr(a) for a in e.args]
            callee = self.mb.functions[sig]
            result = b.call(callee, [self.rt, b.add(self.depth, I64(1))] + [v for v, _ in args])
            owner = self.own(result) if self.mb.typed[sig].ret == ARR else None  # null after an error
            for v, arg_owner in args:
                self.release(v, arg_owner)
            self.after_call(e)
            return result, owner
        name = self.t.builtins[e]
        args = [self.expr(a) for a in e.args]
        values = [v for v, _ in args]
        if name in INTRINSIC:
            return b.call(self.mb.intrinsic(INTRINSIC[name]), values), None
        if name in LIBM:
            return b.call(self.mb.external(LIBM[name], DOUBLE, [DOUBLE] * len(values)), values), None
        if name == "pow":
            return self.arith("**", values[0], values[1]), None
        if name in ("min", "max"):
            return self.min_max(name, values), None
        if name == "len":
            n = b.sitofp(self.length(values[0]), DOUBLE)
            self.release(*args[0])
            return n, None
        if name == "push":
            n = self.push(values[0], values[1], e)
            self.release(*args[0])
            return n, None
        assert name == "array"
        return self.filled_array(values[0], values[1], e)

    def min_max(self, name: str, values: list[ir.Value]) -> ir.Value:
        """The interpreter's rule: first best by < (or >), nan if any value is nan."""
        b = self.b
        best = values[0]
        any_nan = b.fcmp_unordered("uno", best, best)
        better = "<" if name == "min" else ">"
        for v in values[1:]:
            any_nan = b.or_(any_nan, b.fcmp_unordered("uno", v, v))
            best = b.select(b.fcmp_ordered(better, v, best), v, best)
        return b.select(any_nan, ir.Constant(DOUBLE, float("nan")), best)

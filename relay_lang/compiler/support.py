"""The support functions compiled code calls, and the declarations of what a module calls.

The support functions (`SUPPORT`: the budget checks, recording an error, unwinding a frame) are
built once per process, in their own module (`support_module`), and every other module only
declares them (`Declarations.support`): optimising and emitting them anew for each function cost
about half of a small compile. They run only on errors, every 65,536 loop iterations or
recursive calls, and every ALLOCATION_CHECK bytes of arrays made: cold.

The budget checks need no Python and no GIL: the clock is read with `clock_gettime`, the
process's resident memory by the extension (`relay_resident_bytes`, through the function table,
as the interpreter's memory watch reads it). The first check of a call lets the GIL go.
"""

from __future__ import annotations

from llvmlite import ir

from .abi import (
    ARRAY_FUNCTIONS,
    DOUBLE,
    ERR_MEMORY_LIMIT,
    ERR_TIME,
    I1,
    I32,
    I64,
    MAX_FRAMES,
    RT_PTR,
    rt_field,
)

# name -> (type, builder method, cold)
SUPPORT: dict[str, tuple[ir.FunctionType, str, bool]] = {
    "relay_time_up": (ir.FunctionType(I1, [RT_PTR]), "_clock_check", True),
    "relay_memory_over": (ir.FunctionType(I1, [RT_PTR, I64]), "_memory_check", True),
    "relay_budget": (ir.FunctionType(I64, [RT_PTR]), "_budget_check", True),
    "relay_fail": (ir.FunctionType(ir.VoidType(), [RT_PTR, I64, I64, I64, DOUBLE, I64]), "_fail_helper", True),
    "relay_unwind": (ir.FunctionType(ir.VoidType(), [RT_PTR, I64, I64]), "_unwind_helper", True),
}

# The budget checks read only fields compiled code never writes (stop, deadline, memory ceiling) and
# the GIL's state (kept by the extension): callers may treat them as touching no memory they can
# see (see Declarations.support).
BUDGET_CHECKS = frozenset({"relay_time_up", "relay_memory_over", "relay_budget"})


class Declarations:
    """The functions one LLVM module calls, each declared once: support functions, the extension's
    C functions (abi.ARRAY_FUNCTIONS), libc and libm."""

    def __init__(self, name: str, triple: str) -> None:
        self.module = ir.Module(name)
        self.module.triple = triple
        self.externals: dict[str, ir.Function] = {}

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


class SupportBuilder(Declarations):
    """Defines the support functions, in the support module."""

    def build(self) -> ir.Module:
        """The support module: every SUPPORT function, defined."""
        for _, method, _ in SUPPORT.values():
            getattr(self, method)()
        return self.module

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

        The resident size comes from the extension (`relay_resident_bytes`, through the function
        table: no Python, no GIL), the reader the interpreter's memory watch uses too; false when
        the job has no ceiling.
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
        resident = b.call(self.array_function("relay_resident_bytes"), [])
        b.ret(b.icmp_signed(">", b.add(resident, extra), ceiling))
        return fn


def support_module(triple: str) -> ir.Module:
    return SupportBuilder("relay_support", triple).build()

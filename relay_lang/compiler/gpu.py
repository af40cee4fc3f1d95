"""`@gpu` functions to PTX: kernel lowering for `nvptx64-nvidia-cuda`, libdevice, the NVPTX backend.

The kernel of a `@gpu` function (gpu_check.py has shown its iterations
independent and typed it) takes its parameters as numbers (`double`), bools
(`i8`) and arrays (a device pointer to doubles and an `i64` length each),
then a pointer to the error record (`i64 claimed, node, length; double
index`). Each thread runs iterations k = gid, gid + stride, ... with
i = start + k while i < end, as the interpreter's `for` (ops.range_iter).
Functions it calls become device functions (numbers and bools only).

Math builtins call libdevice's `__nv_*` functions, `%` its `__nv_fmod`, `**`
its `__nv_pow`: LLVM 22's NVPTX backend aborts the process on `llvm.sin`,
`llvm.cos` and `llvm.pow` for doubles, and expands `frem` inexactly. No
fast-math or `contract` flags: + - * / are IEEE and never fused. libdevice
is linked with the kernel module's triple and data layout, every function
but the kernel internalized, then O3. Compile in a process you can lose:
the backend aborts instead of raising on what it cannot select.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import llvmlite.binding as llvm
from llvmlite import ir

from ..nodes import (
    Assign,
    Binary,
    Block,
    Bool,
    Break,
    Call,
    Continue,
    Expr,
    ExprStmt,
    ForRange,
    If,
    Index,
    Let,
    Logical,
    Name,
    Num,
    Return,
    Stmt,
    Unary,
    While,
)
from ..parser import parse
from ..resolver import Decl, Resolution, resolve
from .gpu_check import checked_kernel
from .infer import ARR, BOOL, NULL, NUM, Signature, Typed, Typer, enumerate_nodes, param_type
from .jit import has_directive
from .router import static_functions

TRIPLE = "nvptx64-nvidia-cuda"
ARCH = "sm_90"
DOUBLE, I1, I8, I32, I64 = ir.DoubleType(), ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
LIBDEVICE = {"abs": "fabs", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tan": "tan", "atan": "atan", "exp": "exp",
             "log": "log", "floor": "floor", "ceil": "ceil", "round": "round", "atan2": "atan2", "pow": "pow"}
ARITH = {"+": "fadd", "-": "fsub", "*": "fmul", "/": "fdiv"}
SREG = "llvm.nvvm.read.ptx.sreg."


class GpuUnavailable(Exception):
    """What the GPU tier lacks here (a package, a driver, a device): the reason, in words."""


def _nvcc_wheel() -> Path:
    spec = importlib.util.find_spec("nvidia.cuda_nvcc")
    if spec is None or not spec.submodule_search_locations:
        raise GpuUnavailable("nvidia-cuda-nvcc-cu12 is not installed (pip install 'relay-lang[gpu]')")
    return Path(next(iter(spec.submodule_search_locations)))


def libdevice_path() -> Path:
    """libdevice.10.bc in the installed NVIDIA wheel (never a copy in this project)."""
    return _nvcc_wheel() / "nvvm" / "libdevice" / "libdevice.10.bc"


def ptxas_path() -> Path:
    return _nvcc_wheel() / "bin" / "ptxas"


def kernel_name(sig: Signature) -> str:
    return f"relay_gpu_{sig.fn.name}"


# ---------------------------------------------------------------- lowering


class BodyLowerer:
    """Lowers the statements of one kernel or device function (the typed subset gpu_check allows)."""

    def __init__(self, unit: KernelModule, typed: Typed, fn: ir.Function) -> None:
        self.unit = unit
        self.t = typed
        self.res = unit.res
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.vars: dict[Decl, ir.AllocaInstr] = {}
        self.arrays: dict[Decl, tuple[ir.Value, ir.Value]] = {}  # data pointer, length
        self.loops: list[tuple[ir.Block, ir.Block]] = []  # (continue, break) targets
        self.ordinals = {id(n): k for k, n in enumerate_nodes(typed.sig.fn).items()}
        self.err: ir.Value | None = None
        for decl, typ in typed.locals.items():
            if typ != ARR:
                self.vars[decl] = self.b.alloca(DOUBLE if typ == NUM else I1, name=decl.name)

    # ------------------------------------------------------------ statements

    def block(self, stmts: tuple[Stmt, ...] | Block) -> None:
        for s in stmts.stmts if isinstance(stmts, Block) else stmts:
            if self.b.block.is_terminated:
                return
            self.stmt(s)

    def stmt(self, s: Stmt) -> None:
        b = self.b
        if isinstance(s, ExprStmt):
            self.expr(s.expr)
        elif isinstance(s, Let):
            b.store(self.expr(s.value), self.vars[self.res.local(s).decl])
        elif isinstance(s, Assign):
            self.assign(s)
        elif isinstance(s, If):
            self.if_stmt(s)
        elif isinstance(s, While):
            self.loop(lambda: self.expr(s.cond), s.body, None)
        elif isinstance(s, ForRange):
            self.for_range(s)
        elif isinstance(s, (Break, Continue)):
            b.branch(self.loops[-1][1 if isinstance(s, Break) else 0])
        elif isinstance(s, Return):
            self.ret(None if s.value is None else self.expr(s.value))
        else:  # pragma: no cover - gpu_check and the typer let nothing else through
            raise AssertionError(f"cannot lower {type(s).__name__} for the GPU")

    def ret(self, value: ir.Value | None) -> None:
        if value is None or self.t.ret == NULL:
            self.b.ret_void()
        else:
            self.b.ret(value)

    def assign(self, s: Assign) -> None:
        b = self.b
        value = self.expr(s.value)
        op = s.op[:-1]
        if isinstance(s.target, Name):
            slot = self.vars[self.res.local(s.target).decl]
            b.store(value if s.op == "=" else self.arith(op, b.load(slot), value), slot)
            return
        assert isinstance(s.target, Index)
        ptr = self.element(s.target)
        b.store(value if s.op == "=" else self.arith(op, b.load(ptr), value), ptr)

    def if_stmt(self, s: If) -> None:
        b = self.b
        then_bb, else_bb, end_bb = (self.fn.append_basic_block(n) for n in ("if.then", "if.else", "if.end"))
        b.cbranch(self.expr(s.cond), then_bb, else_bb)
        for bb, part in ((then_bb, s.then), (else_bb, s.orelse)):
            b.position_at_end(bb)
            if isinstance(part, Block):
                self.block(part)
            elif part is not None:
                self.stmt(part)
            if not b.block.is_terminated:
                b.branch(end_bb)
        b.position_at_end(end_bb)

    def loop(self, head: Callable[[], ir.Value], body: Block, step: Callable[[], None] | None) -> None:
        b = self.b
        head_bb, body_bb, step_bb, end_bb = (self.fn.append_basic_block(n) for n in ("loop.head", "loop.body",
                                                                                      "loop.step", "loop.end"))
        b.branch(head_bb)
        b.position_at_end(head_bb)
        b.cbranch(head(), body_bb, end_bb)
        b.position_at_end(body_bb)
        self.loops.append((step_bb, end_bb))
        self.block(body)
        self.loops.pop()
        if not b.block.is_terminated:
            b.branch(step_bb)
        b.position_at_end(step_bb)
        if step is not None:
            step()
        b.branch(head_bb)
        b.position_at_end(end_bb)

    def for_range(self, s: ForRange) -> None:
        """An inner counted loop: i = start + k while i < end (k counts in doubles, as the CPU tier)."""
        b = self.b
        start, end = self.expr(s.start), self.expr(s.end)
        k = b.alloca(DOUBLE, name="k")
        b.store(ir.Constant(DOUBLE, 0.0), k)
        var = self.vars[self.res.local(s).decl]

        def head() -> ir.Value:
            value = b.fadd(start, b.load(k))
            b.store(value, var)
            return b.fcmp_ordered("<", value, end)

        self.loop(head, s.body, lambda: b.store(b.fadd(b.load(k), ir.Constant(DOUBLE, 1.0)), k))

    # ------------------------------------------------------------ expressions

    def expr(self, e: Expr) -> ir.Value:
        b = self.b
        if isinstance(e, Num):
            return ir.Constant(DOUBLE, e.value)
        if isinstance(e, Bool):
            return ir.Constant(I1, int(e.value))
        if isinstance(e, Name):
            return b.load(self.vars[self.res.local(e).decl])
        if isinstance(e, Binary):
            return self.binary(e)
        if isinstance(e, Logical):
            return self.logical(e)
        if isinstance(e, Unary):
            value = self.expr(e.operand)
            return b.fneg(value) if e.op == "-" else b.xor(value, ir.Constant(I1, 1))
        if isinstance(e, Index):
            return b.load(self.element(e))
        if isinstance(e, Call):
            return self.call(e)
        raise AssertionError(f"cannot lower {type(e).__name__} for the GPU")  # pragma: no cover

    def arith(self, op: str, a: ir.Value, c: ir.Value) -> ir.Value:
        if op in ARITH:
            return getattr(self.b, ARITH[op])(a, c)
        return self.b.call(self.unit.libdevice("fmod" if op == "%" else "pow", 2), [a, c])

    def binary(self, e: Binary) -> ir.Value:
        b = self.b
        left, right = self.expr(e.left), self.expr(e.right)
        if e.op in ("<", "<=", ">", ">=", "==", "!="):
            if self.t.exprs[e.left] == BOOL:
                return b.icmp_unsigned(e.op, left, right)
            return b.fcmp_unordered("!=", left, right) if e.op == "!=" else b.fcmp_ordered(e.op, left, right)
        return self.arith(e.op, left, right)

    def logical(self, e: Logical) -> ir.Value:
        b = self.b
        left = self.expr(e.left)
        start = b.block
        rhs_bb, end_bb = self.fn.append_basic_block("logic.rhs"), self.fn.append_basic_block("logic.end")
        if e.op == "&&":
            b.cbranch(left, rhs_bb, end_bb)
        else:
            b.cbranch(left, end_bb, rhs_bb)
        b.position_at_end(rhs_bb)
        right = self.expr(e.right)
        rhs_end = b.block
        b.branch(end_bb)
        b.position_at_end(end_bb)
        phi = b.phi(I1)
        phi.add_incoming(left, start)
        phi.add_incoming(right, rhs_end)
        return phi

    def call(self, e: Call) -> ir.Value:
        b = self.b
        sig = self.t.calls.get(e)
        if sig is None and self.t.builtins[e] == "len":  # arrays are values only here and indexed
            return b.sitofp(self.arrays[self.res.local(e.args[0]).decl][1], DOUBLE)
        args = [self.expr(a) for a in e.args]
        if sig is not None:
            return b.call(self.unit.device_function(sig), args)
        name = self.t.builtins[e]
        if name in LIBDEVICE:
            return b.call(self.unit.libdevice(LIBDEVICE[name], len(args)), args)
        assert name in ("min", "max"), name
        best = args[0]
        any_nan = b.fcmp_unordered("uno", best, best)
        for v in args[1:]:  # the interpreter's rule: first best by < (or >), nan if any value is nan
            any_nan = b.or_(any_nan, b.fcmp_unordered("uno", v, v))
            best = b.select(b.fcmp_ordered("<" if name == "min" else ">", v, best), v, best)
        return b.select(any_nan, ir.Constant(DOUBLE, float("nan")), best)

    def element(self, e: Index) -> ir.Value:
        """The address of a[idx] after the interpreter's checks (whole, 0 <= k < len); a failing thread
        records the error (the first to claim the record) and returns."""
        b = self.b
        data, n = self.arrays[self.res.local(e.obj).decl]
        idx = self.expr(e.index)
        k = ir.Instruction(b.block, I64, "freeze", [b.fptosi(idx, I64)])  # as arrays.checked_index: nan is poison
        b._insert(k)
        ok = b.and_(b.fcmp_ordered("==", b.sitofp(k, DOUBLE), idx), b.icmp_unsigned("<", k, n))
        with b.if_then(b.not_(ok), likely=False):
            self.fail(e, idx, n)
        return b.gep(data, [k])

    def fail(self, e: Index, idx: ir.Value, n: ir.Value) -> None:
        b = self.b
        assert self.err is not None, "only kernels index arrays"
        claimed = b.cmpxchg(self.err, I64(0), I64(1), "monotonic", "monotonic")
        with b.if_then(b.extract_value(claimed, 1)):
            b.store(I64(self.ordinals[id(e)]), b.gep(self.err, [I64(1)]))
            b.store(n, b.gep(self.err, [I64(2)]))
            b.store(b.bitcast(idx, I64), b.gep(self.err, [I64(3)]))
        b.ret_void()
        b.position_at_end(b.function.append_basic_block("after.fail"))  # no predecessors: if_then joins it


class KernelModule:
    """The NVPTX module of one `@gpu` function: its kernel and the device functions it calls."""

    def __init__(self, typed: Typed, loop: ForRange, res: Resolution, done: dict[Signature, Typed]) -> None:
        self.res = res  # the program's Resolution
        self.done = done
        self.module = ir.Module(f"relay_gpu_{typed.sig.fn.name}")
        self.module.triple = TRIPLE
        self.module.data_layout = str(target_machine().target_data)
        self.functions: dict[Signature, ir.Function] = {}
        self.pending: list[tuple[Typed, ir.Function]] = []
        self.kernel(typed, loop)
        while self.pending:
            self.device_body(*self.pending.pop())

    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        found = self.module.globals.get(name)
        return found if found is not None else ir.Function(self.module, ir.FunctionType(ret, args), name)

    def libdevice(self, name: str, arity: int) -> ir.Function:
        return self.declare(f"__nv_{name}", DOUBLE, [DOUBLE] * arity)

    def sreg(self, b: ir.IRBuilder, name: str) -> ir.Value:
        return b.zext(b.call(self.declare(SREG + name, I32, []), []), I64)

    def device_function(self, sig: Signature) -> ir.Function:
        found = self.functions.get(sig)
        if found is None:
            typed = self.done[sig]
            types = {NUM: DOUBLE, BOOL: I1, NULL: ir.VoidType()}
            found = self.declare(f"relay_dev_{sig.symbol}", types[typed.ret], [types[p] for p in sig.params])
            found.linkage = "internal"
            self.functions[sig] = found
            self.pending.append((typed, found))
        return found

    def device_body(self, typed: Typed, fn: ir.Function) -> None:
        low = BodyLowerer(self, typed, fn)
        for arg, p in zip(fn.args, typed.sig.fn.params):
            low.b.store(arg, low.vars[self.res.local(p).decl])
        stmts = typed.sig.fn.body.stmts
        low.block(stmts[:-1])
        if stmts and not low.b.block.is_terminated:
            self.tail(low, stmts[-1])
        if not low.b.block.is_terminated:
            low.ret(None if typed.ret == NULL else ir.Constant(DOUBLE if typed.ret == NUM else I1, 0))

    def tail(self, low: BodyLowerer, s: Stmt) -> None:
        """A statement in tail position: an expression (or both branches of an if/else) gives the value."""
        if isinstance(s, ExprStmt) and low.t.ret != NULL:
            low.ret(low.expr(s.expr))
        elif isinstance(s, If) and s.orelse is not None and low.t.ret != NULL:
            b = low.b
            then_bb, else_bb = low.fn.append_basic_block("tail.then"), low.fn.append_basic_block("tail.else")
            b.cbranch(low.expr(s.cond), then_bb, else_bb)
            for bb, part in ((then_bb, s.then), (else_bb, s.orelse)):
                b.position_at_end(bb)
                stmts = part.stmts if isinstance(part, Block) else (part,)
                low.block(stmts[:-1])
                if stmts and not b.block.is_terminated:
                    self.tail(low, stmts[-1])
                if not b.block.is_terminated:
                    b.unreachable()  # the typer saw a value on every path
        else:
            low.stmt(s)

    def kernel(self, typed: Typed, loop: ForRange) -> None:
        fn_node = typed.sig.fn
        types: list[ir.Type] = []
        for p in typed.sig.params:
            types += [DOUBLE.as_pointer(), I64] if p == ARR else [I8 if p == BOOL else DOUBLE]
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), types + [I64.as_pointer()]), kernel_name(typed.sig))
        fn.calling_convention = "ptx_kernel"
        low = BodyLowerer(self, typed, fn)
        b = low.b
        args = iter(fn.args)
        for param, t in zip(fn_node.params, typed.sig.params):
            decl = self.res.local(param).decl
            if t == ARR:
                low.arrays[decl] = (next(args), next(args))
            else:
                value = next(args)
                b.store(b.icmp_unsigned("!=", value, I8(0)) if t == BOOL else value, low.vars[decl])
        low.err = next(args)
        low.block(tuple(s for s in fn_node.body.stmts if s is not loop))  # the lets before the loop
        self.grid_stride(low, loop)
        b.ret_void()

    def grid_stride(self, low: BodyLowerer, loop: ForRange) -> None:
        """k = gid, gid + stride, ...; i = start + k while i < end: each thread its share of the iterations."""
        b = low.b
        start, end = low.expr(loop.start), low.expr(loop.end)
        gid = b.add(b.mul(self.sreg(b, "ctaid.x"), self.sreg(b, "ntid.x")), self.sreg(b, "tid.x"))
        stride = b.mul(self.sreg(b, "ntid.x"), self.sreg(b, "nctaid.x"))
        k = b.alloca(I64, name="k")
        b.store(gid, k)
        var = low.vars[self.res.local(loop).decl]

        def head() -> ir.Value:
            value = b.fadd(start, b.sitofp(b.load(k), DOUBLE))
            b.store(value, var)
            return b.fcmp_ordered("<", value, end)

        low.loop(head, loop.body, lambda: b.store(b.add(b.load(k), stride), k))


# ---------------------------------------------------------------- PTX


_tm: llvm.TargetMachine | None = None


def target_machine() -> llvm.TargetMachine:
    global _tm
    if _tm is None:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _tm = llvm.Target.from_triple(TRIPLE).create_target_machine(cpu=ARCH, features="", opt=3)
    return _tm


def kernel_ir(typed: Typed, loop: ForRange, res: Resolution, done: dict[Signature, Typed]) -> str:
    """The kernel module's LLVM IR, before libdevice and optimisation."""
    return str(KernelModule(typed, loop, res, done).module)


def ptx(ir_text: str, kernels: list[str]) -> str:
    """PTX for sm_90: the module verified, libdevice linked in (same triple and data layout), every
    function but the kernels internalized, O3, then the NVPTX backend."""
    tm = target_machine()
    module = llvm.parse_assembly(ir_text)
    module.verify()
    lib = llvm.parse_bitcode(libdevice_path().read_bytes())
    lib.triple = module.triple
    lib.data_layout = module.data_layout
    module.link_in(lib)
    for f in module.functions:
        if not f.is_declaration and f.name not in kernels:
            f.linkage = llvm.Linkage.internal
    for g in module.global_variables:
        if not g.is_declaration:
            g.linkage = llvm.Linkage.internal
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(module, pb)
    return tm.emit_assembly(module)


def program_kernels(source: str, file: str = "<input>") -> dict[str, tuple[str, str]]:
    """The kernel name and LLVM IR of every `@gpu` function of a program, by function name (Unsupported
    as the router reports it)."""
    program = parse(source, file)
    res = resolve(program)
    top = static_functions(program, res)
    typer = Typer(res, top)
    found: dict[str, tuple[str, str]] = {}
    for fn in top.values():
        if has_directive(fn, "gpu"):
            params = tuple(param_type(p.type) or NUM for p in fn.params)
            typed, loop = checked_kernel(typer, Signature(fn, params))
            found[fn.name] = kernel_name(typed.sig), kernel_ir(typed, loop, res, typer.done)
    return found


def program_ptx(source: str, file: str = "<input>") -> dict[str, str]:
    """The PTX of every `@gpu` function of a program, by function name (compile in a child process)."""
    return {name: ptx(text, [kernel]) for name, (kernel, text) in program_kernels(source, file).items()}

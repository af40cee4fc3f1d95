"""Lowering: typed Relay functions to LLVM IR, with llvmlite.ir.

A module holds a group of specialised functions (a root and its callees: builder.py builds it);
this module lowers one function's body. What it shares with its other parts: frame.py (the
frame, failures, owned array references), arrays.py (array operations) and versioned.py (loops).
Conventions:

- numbers are `double`, bools `i1`, arrays `i8*` pointing at the Array object itself (arrays.py).
- budgets: each function takes its call depth as a hidden second argument and checks it against
  the runtime state's `max_depth`, and checks that its frame lies above the state's
  `stack_limit` (the native stack is never exhausted, whatever the frame size); one tick count
  for the whole compiled call, passed to each function as a hidden third argument and handed
  back beside its result, counts every loop iteration and every call of a function that calls
  others; every 65,536 ticks the budgets are checked (support.py: `relay_budget`).
- an innermost counted loop (`for i in a..b`) whose indexes `bounds.py` finds provable (affine
  in the loop variable) is lowered twice: when a test before the loop proves every such index
  whole and in range on every iteration, the copy without their checks runs on an integer
  counter (with scoped noalias metadata: the test also requires its arrays distinct objects),
  its ticks counted per chunk so LLVM can vectorize it; otherwise the checked copy runs,
  failing exactly where the interpreter does (versioned.py).
"""

from __future__ import annotations

from typing import assert_never

from llvmlite import ir

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
from ..resolver import Decl
from .abi import AT_CALLER, DOUBLE, ERR_DEPTH, ERR_RETURN_TYPE, ERR_STACK, I1, I8, I64, PTR
from .bounds import element_writers, has_loops
from .frame import LLVM_TYPES, ZERO, Owner
from .infer import ARR, BOOL, NULL
from .versioned import LoopLowerer

LIBM = {"tan": "tan", "atan": "atan", "exp": "exp", "log": "log", "atan2": "atan2"}
INTRINSIC = {"sqrt": "llvm.sqrt", "sin": "llvm.sin", "cos": "llvm.cos", "floor": "llvm.floor",
             "ceil": "llvm.ceil", "round": "llvm.round", "abs": "llvm.fabs"}
FCMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


class FunctionLowerer(LoopLowerer):
    """Lowers one typed function of a ModuleUnit into the function declared for it."""

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
        # Loop iterations and calls of functions that call others, in the whole compiled call so far:
        # passed in, handed back.
        self.ticks = b.alloca(I64, name="ticks")
        b.store(fn.args[2], self.ticks)
        self.frame_mark = b.alloca(I8, name="frame")  # its address places this frame on the native stack
        for arg, decl, typ in zip(fn.args[len(self.mb.hidden_types()):], params, self.t.sig.params):
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
        both = ir.Constant(fn.function_type.return_type, ir.Undefined)
        b.ret(b.insert_value(b.insert_value(both, b.load(self.retval), 0), b.load(self.ticks), 1))
        for block in fn.blocks:  # blocks left behind after a jump (break, return, error) are dead
            if not block.is_terminated:
                b.position_at_end(block)
                b.unreachable()

    def prologue(self) -> None:
        """The depth limit, checked on every call as the interpreter does; the native stack and a
        tick in every function that calls others (a leaf's frame fits the margin its caller
        checked, and its work is bounded by its code: loops tick on their own). A call tree
        without loops or recursion can still be exponential (each of 32 functions calling the
        next twice: 2^32 calls), so every call that can make calls counts."""
        b = self.b
        too_deep = b.icmp_signed(">", self.depth, self.rt_load("max_depth"))
        with b.if_then(too_deep, likely=False):
            self.fail(ERR_DEPTH, None)
        if self.t.calls:
            stack_full = b.icmp_unsigned("<", b.ptrtoint(self.frame_mark, I64), self.rt_load("stack_limit"))
            with b.if_then(stack_full, likely=False):
                self.fail(ERR_STACK, None, y=self.depth)
        if not self.t.calls:
            return
        n = b.add(b.load(self.ticks), I64(1))
        b.store(n, self.ticks)
        self.tick_check(n, self.t.sig.fn)

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
        self.count_chunk(self.chunk)  # the caller goes on: the iterations of the chunk it leaves count
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

    # ------------------------------------------------------------ loops

    def for_each(self, s: ForEach) -> None:
        """The loop holds a reference to the list it walks until it ends, however it ends. It walks a
        snapshot, as the interpreter does, when its body may change the list: when it may change an
        array other than by writing elements through names it never rebinds (bounds.element_writers),
        or one of those names holds the list itself (a test before the loop)."""
        b = self.b
        arr, owner = self.expr(s.iterable)
        writers = element_writers(s, self.t, self.res) if self.t.writes_arrays.get(s, True) else []
        if writers is None:
            self.count_allocation(b.mul(self.length(arr), I64(8)), s)
            snapshot = b.call(self.mb.array_function("relay_array_copy"), [arr])
            self.release(arr, owner)
            arr, owner = snapshot, self.own(snapshot)
            self.check_alloc(snapshot, s)
        elif writers:
            arr, owner = self.snapshot_if_written(s, arr, owner, writers)
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

        if has_loops(s.body):
            self.loop("each", s, head, body, step)
        else:  # innermost: its length is fixed, its ticks counted per chunk
            self.chunked_loop(s, n, i, body)
        self.release(arr, owner)

    def snapshot_if_written(self, s: ForEach, arr: ir.Value, owner: Owner, writers: list[Decl]) -> tuple[ir.Value, Owner]:
        """An owned reference to what the loop walks: a snapshot of arr when one of `writers` holds it, else arr."""
        b = self.b
        written = b.icmp_unsigned("==", b.load(self.vars[writers[0]]), arr)
        for w in writers[1:]:
            written = b.or_(written, b.icmp_unsigned("==", b.load(self.vars[w]), arr))
        with b.if_else(written, likely=False) as (copy, share):
            with copy:
                self.count_allocation(b.mul(self.length(arr), I64(8)), s)
                snapshot = b.call(self.mb.array_function("relay_array_copy"), [arr])
                self.check_alloc(snapshot, s)
                copied = b.block
            with share:
                self.incref(arr)
                shared = b.block
        walked = b.phi(PTR)
        walked.add_incoming(snapshot, copied)
        walked.add_incoming(arr, shared)
        self.release(arr, owner)
        return walked, self.own(walked)

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
            result, ticks = self.mb.call(b, sig, [self.rt, b.add(self.depth, I64(1))], b.load(self.ticks),
                                         [v for v, _ in args])
            b.store(ticks, self.ticks)
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

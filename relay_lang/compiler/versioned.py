"""Loops: counted in the function's ticks; innermost counted loops with provable indexes, twice.

An innermost `for i in a..b` loop whose indexes bounds.py finds provable is lowered twice. A
test before the loop (`precheck`) evaluates every part of each provable index at the first and
the last iteration; when each is whole and below 2**53 and each index lies in its array's
range at both ends (and the arrays are distinct objects), the unchecked copy runs
(`unchecked_loop`): the proven indexes are computed in i64 from the loop's integer counter,
with no check, and its element accesses carry scoped noalias metadata. Otherwise the checked
copy runs, today's loop, failing exactly where the interpreter does.

The unchecked copy, and an innermost `for x in array` loop, count their iterations in chunks
(`chunked_loop`): an inner loop runs up to the next multiple of 65,536 ticks with no budget code
in it, so LLVM can unroll and vectorize it; the budgets are checked after the chunk where the
one-by-one loop would check them (after the iteration that makes the counter a multiple of
65,536), and a `break` adds the iterations done.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir

from ..nodes import Binary, Block, Call, Expr, ForEach, ForRange, Name, Node, Num, Stmt, Unary, While
from ..resolver import Decl
from .abi import DOUBLE, I64
from .arrays import ArrayLowerer
from .bounds import EXACT, Provable, direction, shape, split_offset
from .frame import TICK_BITS, TICK_MASK

CHUNK = TICK_MASK + 1


class LoopLowerer(ArrayLowerer):
    """Loops, and the two copies of a provable counted loop."""

    def block(self, block: Block, tail: bool = False) -> None:  # pragma: no cover - FunctionLowerer's
        raise NotImplementedError

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
        self.loop_body(node, body_fn, step_bb, end_bb)
        b.position_at_end(step_bb)
        if step_fn is not None:
            step_fn()
        n = b.add(b.load(self.ticks), I64(1))
        b.store(n, self.ticks)
        self.tick_check(n, node)
        b.branch(head_bb)
        b.position_at_end(end_bb)

    def loop_body(self, node: Node, body_fn: Callable[[], None], step_bb: ir.Block, end_bb: ir.Block) -> None:
        """The body, `continue` going to step_bb and `break` to end_bb; falls through to step_bb."""
        self.loops.append((step_bb, end_bb))
        self.loop_nodes.append(node)
        body_fn()
        self.loop_nodes.pop()
        self.loops.pop()
        if not self.b.block.is_terminated:
            self.b.branch(step_bb)

    def for_range(self, s: ForRange) -> None:
        b = self.b
        start, _ = self.expr(s.start)
        end, _ = self.expr(s.end)
        proof = self.provable.get(s)
        if proof is None:
            self.checked_loop(s, start, end)
            return
        fast_bb = self.fn.append_basic_block("for.unchecked")
        checked_bb = self.fn.append_basic_block("for.checked")
        done_bb = self.fn.append_basic_block("for.done")
        last = b.fsub(b.call(self.mb.intrinsic("llvm.ceil"), [end]), ir.Constant(DOUBLE, 1.0))
        b.cbranch(self.precheck(proof, start, last, []), fast_bb, checked_bb)
        b.position_at_end(fast_bb)
        self.unchecked_loop(s, proof, start, last)
        b.branch(done_bb)
        b.position_at_end(checked_bb)
        self.checked_loop(s, start, end)
        b.branch(done_bb)
        b.position_at_end(done_bb)

    def while_stmt(self, s: While) -> None:
        """A strided while loop (bounds.py) runs its copy without the proven checks when the test holds."""
        b = self.b
        proof = self.provable.get(s)
        if proof is None or proof.stride is None:
            self.loop("while", s, lambda: self.truth(s.cond), lambda: self.block(s.body))
            return
        stride = proof.stride
        start = b.load(self.vars[proof.loop_var])
        conditions: list[ir.Value] = []
        bound = self.affine(stride.bound, proof, start, conditions)
        step = self.affine(stride.step, proof, start, conditions)  # whole by then: v stays whole
        conditions.append(b.fcmp_ordered(">=", step, ir.Constant(DOUBLE, 0.0)))  # v only grows
        if stride.strict:  # the largest whole v below the bound (or at most it)
            last = b.fsub(b.call(self.mb.intrinsic("llvm.ceil"), [bound]), ir.Constant(DOUBLE, 1.0))
        else:
            last = b.call(self.mb.intrinsic("llvm.floor"), [bound])
        fast_bb = self.fn.append_basic_block("while.unchecked")
        checked_bb = self.fn.append_basic_block("while.checked")
        done_bb = self.fn.append_basic_block("while.done")
        b.cbranch(self.precheck(proof, start, last, conditions), fast_bb, checked_bb)
        b.position_at_end(fast_bb)
        self.strided_loop(s, proof, start, last, step)
        b.branch(done_bb)
        b.position_at_end(checked_bb)
        self.loop("while", s, lambda: self.truth(s.cond), lambda: self.block(s.body))
        b.branch(done_bb)
        b.position_at_end(done_bb)

    def strided_loop(self, s: While, proof: Provable, start: ir.Value, last: ir.Value, step: ir.Value) -> None:
        """The copy of a strided while loop that runs when the test held: the variable counts in an i64
        too (whole and below 2**53 while the loop runs), so the condition is an integer compare and
        the step an integer add; the variable's double is converted from it after each step (the
        same value the double add gives, rounded alike past 2**53), not carried from one to the next."""
        b = self.b
        var = self.vars[proof.loop_var]
        counter = self.entry_alloca(I64, "strided")
        b.store(b.fptosi(start, I64), counter)
        final, stride = b.fptosi(last, I64), b.fptosi(step, I64)
        self.scoped = self.alias_scopes(s, proof)
        self.trust(proof, lambda: b.load(counter))

        def body() -> None:
            for statement in s.body.stmts[:-1]:  # the last is the step
                if b.block.is_terminated:
                    return
                self.stmt(statement)
            if not b.block.is_terminated:
                b.store(b.add(b.load(counter), stride), counter)
                b.store(b.sitofp(b.load(counter), DOUBLE), var)

        self.loop("while", s, lambda: b.icmp_signed("<=", b.load(counter), final), body)
        self.trusted.clear()
        self.scoped = {}

    def stmt(self, s: Stmt) -> None:  # pragma: no cover - FunctionLowerer's
        raise NotImplementedError

    def truth(self, e: Expr) -> ir.Value:  # pragma: no cover - FunctionLowerer's
        raise NotImplementedError

    def trust(self, proof: Provable, counter: Callable[[], ir.Value]) -> None:
        """The proof's indexes, computed in i64 from the loop variable's i64 value, unchecked."""
        for index, _ in proof.accesses:
            self.trusted[id(index)] = self.trusted_index(index.index, proof, counter)

    def expr(self, e: Expr) -> tuple[ir.Value, ir.AllocaInstr | None]:  # pragma: no cover - FunctionLowerer's
        raise NotImplementedError

    # ------------------------------------------------------------ the test before the loop

    def small(self, v: ir.Value) -> ir.Value:
        """Whether |v| < 2**53, where doubles hold integers exactly (false for nan)."""
        b = self.b
        return b.fcmp_ordered("<", b.call(self.mb.intrinsic("llvm.fabs"), [v]), ir.Constant(DOUBLE, EXACT))

    def whole(self, v: ir.Value) -> ir.Value:
        """Whether v is a whole number below 2**53 in magnitude."""
        b = self.b
        return b.and_(self.small(v), b.fcmp_ordered("==", b.call(self.mb.intrinsic("llvm.floor"), [v]), v))

    def precheck(self, proof: Provable, start: ir.Value, last: ir.Value, conditions: list[ir.Value]) -> ir.Value:
        """Whether every provable index is whole and in range on every iteration from i = start to
        i = last (see bounds.py), the arrays are distinct objects, and `conditions` hold."""
        b = self.b
        conditions += [self.whole(start), self.small(last)]  # last: whole when small (ceil or floor, less 1)
        pointers = [b.load(self.vars[arr]) for arr in proof.arrays]
        for k, p in enumerate(pointers):  # distinct objects: the unchecked copy tells LLVM they never overlap
            conditions.extend(b.icmp_unsigned("!=", p, q) for q in pointers[k + 1:])
        lengths = {arr: b.sitofp(self.length(p), DOUBLE) for arr, p in zip(proof.arrays, pointers)}
        zero = ir.Constant(DOUBLE, 0.0)
        for arr, base, low, high in self.index_groups(proof):
            first, final = (self.affine(base, proof, i, conditions) for i in (start, last))
            # Growing with the counter (or constant): the smallest index is at the first iteration, the
            # largest at the last (a loop that runs none passes or not: it runs none). Else test both.
            moves = direction(base, proof, self.res)
            if moves is None:
                tests = [(v, k, op) for v in (first, final) for k in (low, high) for op in (">=", "<")]
            else:
                up = moves >= 0
                tests = [(first if up else final, low, ">="), (final if up else first, high, "<")]
            for value, k, op in tests:  # of whole operands, in [0, len) is exact: no test of its size
                index = b.fadd(value, ir.Constant(DOUBLE, float(k))) if k else value
                conditions.append(b.fcmp_ordered(op, index, zero if op == ">=" else lengths[arr]))
        ok = conditions[0]
        for c in conditions[1:]:
            ok = b.and_(ok, c)
        return ok

    def index_groups(self, proof: Provable) -> list[tuple[Decl, Expr, int, int]]:
        """The proof's indexes as (array, base, smallest offset, largest): those of one array that differ
        only by a literal added at their top (the others lie between)."""
        groups: dict[tuple[Decl, object], tuple[Expr, int, int]] = {}
        for index, arr in proof.accesses:
            base, k = split_offset(index.index)
            key = (arr, shape(base, self.res))
            _, low, high = groups.get(key, (base, k, k))
            groups[key] = (base, min(low, k), max(high, k))
        return [(arr, base, low, high) for (arr, _), (base, low, high) in groups.items()]

    def affine(self, e: Expr, proof: Provable, i: ir.Value, checks: list[ir.Value] | None) -> ir.Value:
        """e (affine: bounds.py) with the loop variable's value i: doubles when `checks` is given, else
        i64 (its parts proven whole and exact). In doubles, what makes every part exact is appended to
        `checks`: each variable whole (literals are), each sum, difference and product below 2**53 in
        magnitude (of whole operands, then exact; negation is exact)."""
        b = self.b
        integer = checks is None
        if isinstance(e, Num):
            return I64(int(e.value)) if integer else ir.Constant(DOUBLE, e.value)
        if isinstance(e, Name):
            decl = self.declared(e)
            assert decl is not None
            if decl is proof.loop_var:
                return i
            if decl in proof.lets:
                return self.affine(proof.lets[decl], proof, i, checks)
            value = b.load(self.vars[decl])
            if integer:
                return b.fptosi(value, I64)
            checks.append(self.whole(value))  # type: ignore[union-attr]
            return value
        if isinstance(e, Call):  # len(a): whole and exact
            n = self.length(b.load(self.vars[self.declared(e.args[0])]))
            return n if integer else b.sitofp(n, DOUBLE)
        if isinstance(e, Unary):
            v = self.affine(e.operand, proof, i, checks)
            value = b.sub(I64(0), v, flags=("nsw",)) if integer else b.fneg(v)
        else:
            assert isinstance(e, Binary)
            left, right = self.affine(e.left, proof, i, checks), self.affine(e.right, proof, i, checks)
            op = {"+": "add", "-": "sub", "*": "mul"}[e.op]
            value = getattr(b, op)(left, right, flags=("nsw",)) if integer else getattr(b, f"f{op}")(left, right)
            if not integer:
                checks.append(self.small(value))  # type: ignore[union-attr]
        return value

    # ------------------------------------------------------------ the two copies

    def checked_loop(self, s: ForRange, start: ir.Value, end: ir.Value) -> None:
        """The loop as the interpreter runs it: i = start + k while start + k < end, every index checked."""
        b = self.b
        k = self.entry_alloca(DOUBLE, "k")
        b.store(ir.Constant(DOUBLE, 0.0), k)
        var = self.vars[self.res.local(s).decl]

        def head() -> ir.Value:
            value = b.fadd(start, b.load(k))
            b.store(value, var)
            return b.fcmp_ordered("<", value, end)

        def step() -> None:
            b.store(b.fadd(b.load(k), ir.Constant(DOUBLE, 1.0)), k)

        self.loop("for", s, head, lambda: self.block(s.body), step)

    def unchecked_loop(self, s: ForRange, proof: Provable, start: ir.Value, last: ir.Value) -> None:
        """The copy that runs when the precheck held: i = start + k for k < last - start + 1 (both
        proven whole), the proven indexes in i64, the ticks counted per chunk."""
        b = self.b
        first = b.fptosi(start, I64)
        trip = b.add(b.sub(b.fptosi(last, I64), first), I64(1))
        ki = self.entry_alloca(I64, "ki")
        var = self.vars[self.res.local(s).decl]
        self.scoped = self.alias_scopes(s, proof)
        self.trust(proof, lambda: b.add(first, b.load(ki)))

        def body() -> None:
            b.store(b.fadd(start, b.sitofp(b.load(ki), DOUBLE)), var)
            self.block(s.body)

        self.chunked_loop(s, trip, ki, body)
        self.trusted.clear()
        self.scoped = {}

    def chunked_loop(self, s: ForRange | ForEach, trip: ir.Value, ki: ir.AllocaInstr, body_fn: Callable[[], None]) -> None:
        """An innermost loop of `trip` iterations, ki counting them from 0, its ticks counted per chunk.

        A chunk ends where the ticks reach the next multiple of 65,536, unless calls in its body
        added ticks of their own: then the budgets are checked at the chunk's end if the count
        crossed a multiple meanwhile (the callees checked theirs too).
        """
        b = self.b
        stop = self.entry_alloca(I64, "stop")
        chunk_ticks = self.entry_alloca(I64, "chunk_ticks")  # the ticks when the chunk started
        chunk_done = self.entry_alloca(I64, "chunk_done")  # ki when the chunk started
        b.store(I64(0), ki)
        names = ("chunk", "chunk.start", "fast.head", "fast.body", "fast.step", "chunk.end", "fast.break", "fast.end")
        chunk_bb, start_bb, head_bb, body_bb, step_bb, chunk_end_bb, break_bb, end_bb = (
            self.fn.append_basic_block(name) for name in names)
        b.branch(chunk_bb)
        b.position_at_end(chunk_bb)  # the next chunk: up to the next multiple of 65,536 ticks
        done = b.load(ki)
        b.cbranch(b.icmp_signed("<", done, trip), start_bb, end_bb)
        b.position_at_end(start_bb)
        ticks0 = b.load(self.ticks)
        b.store(ticks0, chunk_ticks)
        b.store(done, chunk_done)
        room = b.sub(I64(CHUNK), b.and_(ticks0, I64(TICK_MASK)))
        b.store(b.select(b.icmp_signed("<", b.sub(trip, done), room), trip, b.add(done, room)), stop)
        b.branch(head_bb)
        b.position_at_end(head_bb)
        b.cbranch(b.icmp_signed("<", b.load(ki), b.load(stop)), body_bb, chunk_end_bb)
        b.position_at_end(body_bb)
        self.chunk = (ki, chunk_done)
        self.loop_body(s, body_fn, step_bb, break_bb)
        self.chunk = None
        b.position_at_end(step_bb)
        b.store(b.add(b.load(ki), I64(1)), ki)
        b.branch(head_bb)
        b.position_at_end(chunk_end_bb)
        # The chunk ran to its stop: ki is stop, said so that ki has no use after the inner loop
        # (LLVM vectorizes the remainder of a loop whose counter is not used after it).
        b.store(b.load(stop), ki)
        self.count_chunk((ki, chunk_done))
        ticks = b.load(self.ticks)
        crossed = b.icmp_unsigned("!=", b.lshr(b.load(chunk_ticks), I64(TICK_BITS)), b.lshr(ticks, I64(TICK_BITS)))
        self.budget_check(crossed, s)
        b.branch(chunk_bb)
        b.position_at_end(break_bb)  # the iterations before the break count
        self.count_chunk((ki, chunk_done))
        b.branch(end_bb)
        b.position_at_end(end_bb)

    def count_chunk(self, chunk: tuple[ir.AllocaInstr, ir.AllocaInstr] | None) -> None:
        """Adds the iterations of a chunk (ki, ki at its start) to the ticks: a break or a return leaves it."""
        if chunk is not None:
            ki, chunk_done = chunk
            b = self.b
            b.store(b.add(b.load(self.ticks), b.sub(b.load(ki), b.load(chunk_done))), self.ticks)

    def trusted_index(self, e: Expr, proof: Provable, counter: Callable[[], ir.Value]) -> Callable[[], ir.Value]:
        """The i64 value of a proven index, computed where it is used."""
        return lambda: self.affine(e, proof, counter(), None)

    def alias_scopes(self, s: ForRange | While, proof: Provable) -> dict[Decl, tuple[ir.Value, ir.Value]]:
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

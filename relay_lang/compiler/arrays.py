"""Lowering array operations: Relay arrays in compiled code.

Arrays are `i8*` pointing at the very Array object the interpreter uses (`_array.c`; the offsets
of its fields: `abi.ARRAY_*`). Compiled code takes only arrays of the numbers kind (checked once
on entry, not per element) and reads and writes their flat buffer of doubles in place; new
arrays, pushes that grow a buffer and snapshots go through the extension's C functions. Every
index is checked as the interpreter checks it, except those a counted loop proved in range
(`trusted`, see bounds.py and versioned.py); what arrays allocate is counted against the budgets
(`count_allocation`).
"""

from __future__ import annotations

from llvmlite import ir

from ..builtin_table import MAX_ARRAY
from ..nodes import Expr, Index, Node
from .abi import (
    ARRAY_CAPACITY,
    ARRAY_ITEMS,
    ARRAY_OWNER_PINS,
    ARRAY_PIN_OWNER,
    ARRAY_PINS,
    ARRAY_SIZE,
    DOUBLE,
    ERR_ARRAY_BUDGET,
    ERR_ARRAY_BUSY,
    ERR_ARRAY_SIZE,
    ERR_INDEX,
    ERR_MEMORY,
    ERR_MEMORY_LIMIT,
    I32,
    I64,
    PTR,
    rt_field,
)
from .frame import FrameLowerer, Owner

ALLOCATION_CHECK = 1 << 20  # bytes of arrays made between two checks of the budgets


class ArrayLowerer(FrameLowerer):
    """Headers, elements, checked indexes, allocations counted against the budgets, new arrays, push."""

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

    def check_alloc(self, obj: ir.Value, node: Node) -> None:
        with self.b.if_then(self.b.icmp_unsigned("==", obj, ir.Constant(PTR, None)), likely=False):
            self.fail(ERR_MEMORY, node)

    def index_of(self, e: Index, arr: ir.Value, idx: ir.Value) -> ir.Value:
        """The i64 index of e: unchecked where the loop proved it (see bounds.py), else checked."""
        proven = self.trusted.get(id(e))
        return proven() if proven is not None else self.checked_index(arr, idx, e)

    def checked_index(self, arr: ir.Value, idx: ir.Value, node: Node) -> ir.Value:
        """The i64 index, after the interpreter's checks (whole and 0 <= i < len) in one test and
        branch: k = idx converted, then k converts back to idx and k < len unsigned. fptosi of nan or
        of a double beyond i64 is poison: frozen, it is some k that cannot pass the test (no i64
        converts back to nan or to a double beyond 2**63; one near 2**63 is not below len)."""
        b = self.b
        n = self.length(arr)
        k = ir.Instruction(b.block, I64, "freeze", [b.fptosi(idx, I64)])  # llvmlite's builder has no freeze
        b._insert(k)
        ok = b.and_(b.fcmp_ordered("==", b.sitofp(k, DOUBLE), idx), b.icmp_unsigned("<", k, n))
        with b.if_then(b.not_(ok), likely=False):
            self.fail(ERR_INDEX, node, idx, n)
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

"""What the parts of a function's lowering share: the module being built, and the function's frame.

- `ModuleUnit`: one LLVM module for a group of specialised functions (a root and its callees),
  each declared with its hidden arguments first (the job's runtime state, `abi.RT_LAYOUT`, and
  its call depth), and the TBAA tags of its memory: array headers (size, items), elements and the
  runtime state never overlap, so LLVM can keep an array's size and buffer in registers through a
  loop that only reads and writes elements.
- `FrameLowerer`: the frame of the function being lowered. Every array reference the code holds
  (a variable, a temporary, the array a for-in loop walks) lives in a slot of the frame that
  every exit (return, break, error) releases: no borrowed pointer outlives what keeps it alive,
  and nothing leaks on an error path. Errors never unwind: a failing function records its error
  in the runtime state (`fail`) and jumps to its exit block, and each caller records its call
  site (`after_call`) and exits too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from llvmlite import ir

from ..nodes import Expr, Node
from ..resolver import Decl, Resolution
from .abi import DOUBLE, I1, I8, I64, PTR, RT_PTR, rt_field
from .bounds import name_decl, provable_loops
from .infer import ARR, BOOL, NULL, NUM, Signature, Typed, annotation_holds, enumerate_nodes
from .support import Declarations

TICK_BITS = 16
TICK_MASK = (1 << TICK_BITS) - 1  # the budgets are checked every 65,536 ticks (loop iterations, calls that call)
Owner: TypeAlias = ir.AllocaInstr | None  # the slot owning an array reference; None: borrowed
LLVM_TYPES = {NUM: DOUBLE, BOOL: I1, ARR: PTR, NULL: I8}
ZERO = {NUM: ir.Constant(DOUBLE, 0.0), BOOL: ir.Constant(I1, 0), ARR: ir.Constant(PTR, None),
        NULL: ir.Constant(I8, 0)}


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


class ModuleUnit(Declarations):
    """One LLVM module for a group of typed functions: the functions, declared, and its TBAA tags."""

    def __init__(self, name: str, group: list[Typed], res: Resolution, triple: str,
                 fastmath: set[Signature], key: str) -> None:
        super().__init__(name, triple)
        self.res = res
        self.key = key
        self.typed = {t.sig: t for t in group}
        self.group = group
        self.index = {t.sig: i for i, t in enumerate(group)}
        self.fastmath = fastmath
        tbaa_root = self.module.add_metadata([ir.MetaDataString(self.module, "relay arrays")])
        self.tbaa = {name: self.module.add_metadata([node, node, I64(0)]) for name, node in (
            (name, self.module.add_metadata([ir.MetaDataString(self.module, name), tbaa_root, I64(0)]))
            for name in ("header", "element", "runtime"))}
        self.functions: dict[Signature, ir.Function] = {}
        self.recursive = recursive_functions(group)
        for t in group:
            fnty = ir.FunctionType(self.return_type(t), self.hidden_types() + [LLVM_TYPES[p] for p in t.sig.params])
            fn = ir.Function(self.module, fnty, f"{t.sig.symbol}_{len(self.functions)}")  # names may repeat
            fn.linkage = "internal"  # only the entry wrappers are called from outside
            fn.attributes.add("nounwind")
            self.functions[t.sig] = fn

    @staticmethod
    def hidden_types() -> list[ir.Type]:
        """The hidden arguments, first: the job's runtime state, the call depth and the ticks of the
        compiled call so far. Registers, not fields of the runtime state to load and store on every
        call (a store-to-load chain through memory that made fib 1.3x slower than without ticks)."""
        return [RT_PTR, I64, I64]

    @staticmethod
    def return_type(t: Typed) -> ir.Type:
        """Every function hands the ticks back beside its result: one count for the whole call, so
        loops of under 65,536 iterations in nested calls still reach a budget check."""
        return ir.LiteralStructType([LLVM_TYPES[t.ret], I64])

    def call(self, b: ir.IRBuilder, sig: Signature, hidden: list[ir.Value], ticks: ir.Value,
             args: list[ir.Value], attrs: tuple[str, ...] = ()) -> tuple[ir.Value, ir.Value]:
        """Calls a function of the module: its result, and the ticks it hands back."""
        both = b.call(self.functions[sig], hidden + [ticks] + args, attrs=attrs)
        return b.extract_value(both, 0), b.extract_value(both, 1)


class FrameLowerer:
    """The frame of one function being lowered: its slots, the runtime state, its failures, the array
    references it owns."""

    # Set when lowering starts (FunctionLowerer.lower).
    b: ir.IRBuilder
    exit: ir.Block
    retval: ir.AllocaInstr
    rt: ir.Argument
    depth: ir.Argument
    ticks: ir.AllocaInstr
    frame_mark: ir.AllocaInstr

    def __init__(self, mb: ModuleUnit, typed: Typed) -> None:
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
        self.res = mb.res
        self.provable = provable_loops(typed, self.res)
        self.trusted: dict[int, Callable[[], ir.Value]] = {}  # id of a proven Index -> its i64 index
        self.failing: tuple[ir.Block, list[ir.PhiInstr]] | None = None  # the block every failure jumps to
        self.scoped: dict[Decl, tuple[ir.Value, ir.Value]] = {}  # array -> alias metadata, in an unchecked loop
        self.chunk: tuple[ir.AllocaInstr, ir.AllocaInstr] | None = None  # (ki, ki at its start) of the running chunk

    def rt_load(self, name: str) -> ir.Value:
        """A field of the runtime state; its TBAA tag tells LLVM array elements never overlap it."""
        value = self.b.load(rt_field(self.b, self.rt, name))
        value.set_metadata("tbaa", self.mb.tbaa["runtime"])
        return value

    def tick_check(self, counter: ir.Value, node: Node) -> None:
        """The budgets, checked when one more tick made the counter a multiple of 65,536."""
        b = self.b
        self.budget_check(b.icmp_unsigned("==", b.and_(counter, I64(TICK_MASK)), I64(0)), node)

    def budget_check(self, due: ir.Value, node: Node) -> None:
        b = self.b
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

    def stop_node(self) -> Node:
        """Where the interpreter notices a stop: the innermost loop, else the function."""
        return self.loop_nodes[-1] if self.loop_nodes else self.t.sig.fn

    def entry_alloca(self, typ: ir.Type, name: str) -> ir.AllocaInstr:
        """An alloca in the entry block, where mem2reg can promote it."""
        b = self.b
        here = b.block
        entry = self.fn.blocks[0]
        b.position_at_start(entry)
        slot = b.alloca(typ, name=name)
        b.position_at_end(here)
        return slot

    def declared(self, e: Expr) -> Decl | None:
        return name_decl(e, self.res)

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

"""Bounds: which array indexes of a counted loop one check before the loop can prove valid.

For an innermost `for i in a..b` loop, an index `arr[e]` (arr a plain variable) is provable when
nothing in the body can change arr's length or rebind it (no push, no call that is given an
array, no assignment to arr, arr not declared in the body) and `e` is affine in the loop
variable: built with `+`, `-`, unary `-` and `*` (one side free of the loop variable) from

- whole number literals below 2**53;
- the loop variable, when the body never assigns it;
- variables the body neither declares nor assigns (their value is the same on every iteration);
- `len(a)` of an array the body neither declares nor assigns (nothing in it changes a length);
- variables declared by a `let` in the body and never assigned there: their `let`'s expression,
  itself affine, stands for them (`let row = i * n` then `c[row + j]`).

Then each part of `e` is, on every iteration, `c * i + d` with c and d the same on each
(whole numbers once its leaves are), so its extremes are at the loop's first and last
iterations. The check before the loop (versioned.py) evaluates `e` at both, and requires the
first iteration's counter and each variable in `e` whole, each sum, difference and product in
it below 2**53 in magnitude (of whole operands, such a result is then exact: on every
iteration in between too), and `e` itself in `[0, len(arr))` at both: then `e` is whole and in
range on every iteration. Indexes of one array that differ by a literal added at their top
(`b[l]`, `b[l + 3]`, `b[l + 6]`) are tested together: the smallest and the largest. Lowering
emits the loop twice and takes the copy without those checks when the test holds, today's
checked copy otherwise (which fails exactly where the interpreter does).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..nodes import (
    Assign,
    Binary,
    Call,
    Expr,
    ForEach,
    ForRange,
    Index,
    Let,
    MethodCall,
    Name,
    Node,
    Num,
    Unary,
    While,
    walk,
)
from ..resolver import Decl, Resolution
from .infer import ARR, NUM, Typed

EXACT = 2.0 ** 53  # doubles below this in magnitude hold every integer exactly


@dataclass(frozen=True)
class Stride:
    """`while v < bound { ...; v += step }` (or `<=`): bound and step free of v and of the body's writes."""

    bound: Expr
    step: Expr
    strict: bool


@dataclass(frozen=True)
class Provable:
    """An innermost counted loop's provable indexes, and what their expressions stand on."""

    loop_var: Decl  # the counter, or the variable of a strided while loop
    accesses: tuple[tuple[Index, Decl], ...]  # (index node, its array), in the body's order
    lets: dict[Decl, Expr]  # variables declared in the body and never assigned there -> their value
    stride: Stride | None = None  # for a strided while loop

    @property
    def arrays(self) -> list[Decl]:
        """The arrays of the accesses, each once, in order."""
        return list(dict.fromkeys(arr for _, arr in self.accesses))


def provable_loops(typed: Typed, res: Resolution) -> dict[ForRange | While, Provable]:
    found: dict[ForRange | While, Provable] = {}
    for node in walk(typed.sig.fn.body):
        if isinstance(node, ForRange):
            proof = _provable(node, res.local(node).decl, None, typed, res)
        elif isinstance(node, While):
            proof = _strided(node, typed, res)
        else:
            continue
        if proof is not None:
            found[node] = proof
    return found


def has_loops(block: Node) -> bool:
    """Whether a loop stands anywhere in `block` (the body of an innermost loop has none)."""
    return any(isinstance(n, (ForRange, ForEach, While)) for n in walk(block))


def name_decl(e: Node, res: Resolution) -> Decl | None:
    """The local declaration a plain name refers to; None for any other expression or binding."""
    if type(e) is not Name:
        return None
    return getattr(res.bindings.get(e), "decl", None)


class _Body:
    """What a loop's body declares and assigns, for deciding which of its expressions are affine."""

    def __init__(self, loop_var: Decl, typed: Typed, res: Resolution, body: list[Node], step: Assign | None) -> None:
        self.typed, self.res = typed, res
        self.loop_var = loop_var
        self.assigned: set[Decl] = set()
        self.declared: dict[Decl, Expr] = {}
        for n in body:
            if isinstance(n, Assign) and n is not step and isinstance(n.target, Name):
                decl = name_decl(n.target, res)
                if decl is not None:
                    self.assigned.add(decl)
            elif isinstance(n, Let):
                self.declared[res.local(n).decl] = n.value
        self.lets = {d: v for d, v in self.declared.items() if d not in self.assigned and typed.locals.get(d) == NUM}

    def invariant(self, decl: Decl) -> bool:
        return decl not in self.assigned and decl not in self.declared

    def degree(self, e: Expr) -> int | None:
        """1 if e is affine in the loop variable, 0 if it is free of it (see the module), else None."""
        if isinstance(e, Num):
            return 0 if float(e.value).is_integer() and abs(e.value) < EXACT else None
        if isinstance(e, Name):
            decl = name_decl(e, self.res)
            if decl is None:
                return None
            if decl is self.loop_var:
                return 1 if decl not in self.assigned else None
            if decl in self.lets:
                return self.degree(self.lets[decl])
            return 0 if self.invariant(decl) and self.typed.locals.get(decl) == NUM else None
        if isinstance(e, Call) and self.typed.builtins.get(e) == "len":  # of an array the body keeps
            arr = name_decl(e.args[0], self.res)
            return 0 if arr is not None and self.invariant(arr) and self.typed.locals.get(arr) == ARR else None
        if isinstance(e, Unary) and e.op == "-":
            return self.degree(e.operand)
        if isinstance(e, Binary) and e.op in ("+", "-", "*"):
            left, right = self.degree(e.left), self.degree(e.right)
            if left is None or right is None:
                return None
            total = left + right if e.op == "*" else max(left, right)
            return total if total <= 1 else None
        return None


def split_offset(e: Expr) -> tuple[Expr, int]:
    """e as `base + k`, k the literal added to or subtracted from it at its top (0 if none)."""
    if isinstance(e, Binary) and e.op in ("+", "-"):
        if isinstance(e.right, Num):
            return e.left, int(e.right.value) if e.op == "+" else -int(e.right.value)
        if isinstance(e.left, Num) and e.op == "+":
            return e.right, int(e.left.value)
    return e, 0


def shape(e: Expr, res: Resolution) -> object:
    """A key equal for expressions that compute the same from the same variables."""
    if isinstance(e, Name):
        return name_decl(e, res)
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Unary):
        return (e.op, shape(e.operand, res))
    if isinstance(e, Binary):
        return (e.op, shape(e.left, res), shape(e.right, res))
    return id(e)


def direction(e: Expr, proof: Provable, res: Resolution) -> int | None:
    """How the affine e moves as the loop variable grows: 1 never down, -1 never up, 0 not at all, None
    when that depends on values known only at run time (`c * i`)."""
    if isinstance(e, Name):
        decl = name_decl(e, res)
        if decl is proof.loop_var:
            return 1
        return direction(proof.lets[decl], proof, res) if decl in proof.lets else 0
    if isinstance(e, Unary):
        inner = direction(e.operand, proof, res)
        return None if inner is None else -inner
    if not isinstance(e, Binary):
        return 0  # a literal
    left, right = direction(e.left, proof, res), direction(e.right, proof, res)
    if left is None or right is None:
        return None
    if e.op == "*":  # one side is free of the loop variable: a literal's sign decides
        if left == right == 0:
            return 0
        fixed, moving = (e.left, right) if left == 0 else (e.right, left)
        return moving * ((fixed.value > 0) - (fixed.value < 0)) if isinstance(fixed, Num) else None
    right = -right if e.op == "-" else right
    return right if left == 0 else left if right == 0 or left == right else None


def element_writers(loop: ForEach, typed: Typed, res: Resolution) -> list[Decl] | None:
    """The arrays a for-in loop's body writes elements of, through plain names the body never
    rebinds; None when it may change an array otherwise (push, a call given an array, a write
    through any other expression or a rebound name)."""
    body = list(walk(loop.body))
    rebound = {name_decl(n.target, res) for n in body if isinstance(n, Assign) and isinstance(n.target, Name)}
    rebound |= {res.local(n).decl for n in body if isinstance(n, Let)}
    writers: list[Decl] = []
    for n in body:
        if changes_lengths(n, typed):
            return None
        if isinstance(n, Assign) and isinstance(n.target, Index):
            decl = name_decl(n.target.obj, res)
            if decl is None or decl in rebound:
                return None
            if decl not in writers:
                writers.append(decl)
    return writers


def changes_lengths(n: Node, typed: Typed) -> bool:
    """Whether n may change an array's length: push (the only method compiled code has), or a call
    given an array (the callee may push to it)."""
    t = type(n)
    if t is MethodCall or (t is Call and typed.builtins.get(n) == "push"):
        return True
    return t is Call and n in typed.calls and any(typed.exprs.get(a) == ARR for a in n.args)  # type: ignore[attr-defined]


def _provable(loop: ForRange | While, var: Decl, step: Assign | None, typed: Typed, res: Resolution) -> Provable | None:
    if has_loops(loop.body):
        return None  # innermost loops only: each level would double the code
    body = list(walk(loop.body))
    if any(changes_lengths(n, typed) for n in body):
        return None
    scope = _Body(var, typed, res, body, step)
    accesses: list[tuple[Index, Decl]] = []
    for n in body:
        if isinstance(n, Index):
            arr = name_decl(n.obj, res)
            if arr is not None and typed.locals.get(arr) == ARR and scope.invariant(arr) and scope.degree(n.index) is not None:
                accesses.append((n, arr))
    if not accesses:
        return None
    stride = None
    if isinstance(loop, While):
        assert step is not None and isinstance(loop.cond, Binary)
        if var in scope.declared or var in scope.assigned:  # the step is the only write: it drives the fast copy
            return None
        if scope.degree(loop.cond.right) != 0 or scope.degree(step.value) != 0:
            return None
        stride = Stride(loop.cond.right, step.value, loop.cond.op == "<")
    return Provable(var, tuple(accesses), scope.lets, stride)


def _strided(loop: While, typed: Typed, res: Resolution) -> Provable | None:
    """`while v < bound { ...; v += step }`: v grows by step (whole, >= 0: the test before the loop) at
    the end of each iteration and nowhere else, so in the body it runs from its value on entry to
    below the bound (see versioned.py)."""
    cond, stmts = loop.cond, loop.body.stmts
    if not (isinstance(cond, Binary) and cond.op in ("<", "<=") and stmts):
        return None
    var, step = name_decl(cond.left, res), stmts[-1]
    if var is None or typed.locals.get(var) != NUM:
        return None
    if not (isinstance(step, Assign) and step.op == "+=" and name_decl(step.target, res) is var):
        return None
    return _provable(loop, var, step, typed, res)

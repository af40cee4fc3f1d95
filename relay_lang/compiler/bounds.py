"""Bounds: which array indexes of a counted loop one check before the loop can prove valid.

For an innermost `for i in a..b` loop, an index `arr[v]` (arr and v plain
variables) is provable when nothing in the body can change arr's length or
rebind arr or v: no push, no call that is given an array, no assignment to
arr or v, and neither declared in the body (a `let` there gives it a new
value each iteration, which the check before the loop cannot see). Then, if `v` is the loop variable, `a` whole and >= 0 and `b <=
len(arr)` cover every iteration; if `v` is any other variable, its value on
entry (whole, 0 <= v < len(arr)) holds throughout. Lowering emits the loop
twice and takes the copy without per-index checks when those hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..nodes import Assign, Call, ForEach, ForRange, Index, Let, MethodCall, Name, Node, While, walk
from ..resolver import Decl, Resolution
from .infer import ARR, NUM, Typed


@dataclass(frozen=True)
class Provable:
    """The (array, index variable) pairs of a loop a check on entry can prove; `loop_var` is the loop's."""

    loop_var: Decl
    pairs: tuple[tuple[Decl, Decl], ...]

    @property
    def arrays(self) -> list[Decl]:
        """The arrays of the pairs, each once, in order."""
        return list(dict.fromkeys(arr for arr, _ in self.pairs))


def provable_loops(typed: Typed, res: Resolution) -> dict[ForRange, Provable]:
    found: dict[ForRange, Provable] = {}
    for node in walk(typed.sig.fn.body):
        if type(node) is ForRange:
            proof = _provable(node, typed, res)
            if proof is not None:
                found[node] = proof
    return found


def name_decl(e: Node, res: Resolution) -> Decl | None:
    """The local declaration a plain name refers to; None for any other expression or binding."""
    if type(e) is not Name:
        return None
    return getattr(res.bindings.get(e), "decl", None)


def _provable(loop: ForRange, typed: Typed, res: Resolution) -> Provable | None:
    body = list(walk(loop.body))
    if any(type(n) in (ForRange, ForEach, While) for n in body):
        return None  # innermost loops only: each level would double the code
    assigned: set[Decl] = set()  # assigned or declared in the body
    pairs: list[tuple[Decl, Decl]] = []
    for n in body:
        t = type(n)
        if t is MethodCall or (t is Call and typed.builtins.get(n) == "push"):
            return None  # push (the only method compiled code has) changes a length
        if t is Call and n in typed.calls and any(typed.exprs.get(a) == ARR for a in n.args):  # type: ignore[attr-defined]
            return None  # a callee given an array may push to it
        if t is Assign and type(n.target) is Name:  # type: ignore[attr-defined]
            decl = name_decl(n.target, res)  # type: ignore[attr-defined]
            if decl is not None:
                assigned.add(decl)
        if t is Let:
            assigned.add(res.bindings[n].decl)  # type: ignore[union-attr]
        if t is Index:
            arr, index = name_decl(n.obj, res), name_decl(n.index, res)  # type: ignore[attr-defined]
            if arr is not None and index is not None and typed.locals.get(arr) == ARR \
                    and typed.locals.get(index) == NUM and (arr, index) not in pairs:
                pairs.append((arr, index))
    loop_var = res.bindings[loop].decl  # type: ignore[union-attr]
    kept = tuple((arr, index) for arr, index in pairs if arr not in assigned and index not in assigned)
    return Provable(loop_var, kept) if kept else None

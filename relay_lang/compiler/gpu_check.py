"""The rules of `@gpu` functions: a counted loop whose iterations are independent.

A `@gpu` function is `let`s of numbers or bools (optional), then one loop
`for i in a..b { ... }`, and nothing after it. Each iteration becomes a GPU
thread, so the compiler refuses, with the position of the offending node:

- an array written at any index but the iteration's own, `x[i]` (i never assigned);
- an array written in the loop and read at another index than `x[i]`;
- `push` (it changes an array's length), `array(...)` and array literals (no allocation);
- an assignment to a variable declared outside the loop (a reduction across iterations);
- `return` in the loop, and `break` out of it (both end the other iterations);
- `for x in array` loops (write `for j in 0..len(a)`), local array variables;
- calls to functions the LLVM tier cannot compile, or that take, make or return arrays.

The typer (infer.py) has typed the function first: everything here is in the compiled subset.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..nodes import ArrayLit, Assign, Break, Call, FnLit, ForEach, ForRange, Index, Let, MethodCall, Name, Node, Return, While, walk
from ..resolver import Decl, Local, Resolution
from .infer import ARR, Signature, Typed, Typer, Unsupported


def checked_kernel(typer: Typer, sig: Signature) -> tuple[Typed, ForRange]:
    """The typed `@gpu` function and its loop; Unsupported (placed in this function) otherwise."""
    try:
        typed = typer.function(sig)
    except Unsupported as u:
        raise _at_call_site(sig.fn, typer, u) from None
    return typed, kernel_loop(typed, typer)


def _at_call_site(fn: FnLit, typer: Typer, u: Unsupported) -> Unsupported:
    """An error found in a callee, placed at the call of the @gpu function that leads there (the call
    of the function holding the error, else the first call of a top-level function)."""
    if any(n.pos == u.pos for n in walk(fn)):
        return u
    calls = [n for n in walk(fn.body)
             if isinstance(n, Call) and isinstance(n.callee, Name) and n.callee.name in typer.top_level]
    direct = [c for c in calls if any(n.pos == u.pos for n in walk(typer.top_level[c.callee.name]))]  # type: ignore[union-attr]
    for call in direct or calls[:1]:
        return Unsupported(f"{call.callee.name} cannot be compiled by the LLVM tier ({u.pos}: {u.reason})",  # type: ignore[union-attr]
                           call.pos)
    return u


def kernel_loop(typed: Typed, typer: Typer) -> ForRange:
    """The loop of a `@gpu` function, once its iterations are shown independent; else Unsupported."""
    fn = typed.sig.fn
    loop = _shape(fn, typed)
    res = typer.res
    inside = _declared_in(loop, res)
    index_var = res.local(loop).decl
    written = _written_arrays(loop, res, index_var, inside)
    for node in walk(loop.body):
        _check_node(node, typed, res, inside, index_var, written)
    _check_reads(loop, res, index_var, written)
    _check_calls(typed, typer)
    return loop


def _shape(fn: FnLit, typed: Typed) -> ForRange:
    stmts = fn.body.stmts
    loops = [s for s in stmts if isinstance(s, ForRange)]
    if not loops:
        raise Unsupported("a @gpu function is a counted loop `for i in a..b { ... }` (none found)", fn.pos)
    loop = loops[0]
    for s in stmts:
        if s is loop:
            continue
        if not isinstance(s, Let) or stmts.index(s) > stmts.index(loop):
            raise Unsupported("a @gpu function is `let`s, then one loop `for i in a..b { ... }`, and nothing after it", s.pos)
    for decl, t in typed.locals.items():
        if t == ARR and not _is_param(decl, fn):
            raise Unsupported(f"array variable '{decl.name}' in @gpu code (only parameters hold arrays)", decl.node.pos)
    return loop


def _is_param(decl: Decl, fn: FnLit) -> bool:
    return any(decl.node is p for p in fn.params)


def _declared_in(loop: ForRange, res: Resolution) -> set[Decl]:
    return {res.local(n).decl for n in walk(loop) if isinstance(n, (Let, ForRange))}


def _array_name(e: Node, res: Resolution) -> Decl | None:
    if isinstance(e, Name):
        binding = res.bindings.get(e)
        if isinstance(binding, Local):
            return binding.decl
    return None


def _own_index(e: Node, res: Resolution, index_var: Decl) -> bool:
    return _array_name(e, res) is index_var


def _written_arrays(loop: ForRange, res: Resolution, index_var: Decl, inside: set[Decl]) -> set[Decl]:
    """The arrays the loop writes; each only at x[i]."""
    written: set[Decl] = set()
    for n in walk(loop.body):
        if isinstance(n, Assign) and isinstance(n.target, Index):
            target = n.target
            if not _own_index(target.index, res, index_var):
                raise Unsupported(f"an array is written at another index than the iteration's own ([{loop.var}]): "
                                  "iterations would not be independent", target.index.pos)
            decl = _array_name(target.obj, res)
            if decl is None:
                raise Unsupported("@gpu code writes arrays through parameter names only", target.obj.pos)
            written.add(decl)
    return written


def _check_node(n: Node, typed: Typed, res: Resolution, inside: set[Decl], index_var: Decl, written: set[Decl]) -> None:
    if isinstance(n, Assign) and isinstance(n.target, Name):
        decl = res.local(n.target).decl
        if decl is index_var:
            raise Unsupported(f"the loop variable '{decl.name}' is assigned: the iteration's index must not change", n.pos)
        if decl not in inside:
            raise Unsupported(f"'{decl.name}' is declared outside the loop: assigning it makes a reduction across "
                              "iterations, which @gpu code does not do", n.pos)
    elif isinstance(n, MethodCall) or (isinstance(n, Call) and typed.builtins.get(n) == "push"):
        raise Unsupported("push changes an array's length: iterations would not be independent", n.pos)
    elif isinstance(n, ArrayLit) or (isinstance(n, Call) and typed.builtins.get(n) == "array"):
        raise Unsupported("@gpu code makes no arrays (array literals, array(n, v))", n.pos)
    elif isinstance(n, Return):
        raise Unsupported("return inside the loop of a @gpu function would end the other iterations", n.pos)
    elif isinstance(n, ForEach):
        raise Unsupported("for-in loops are not supported in @gpu code (write `for j in 0..len(a)`)", n.pos)


def _check_reads(loop: ForRange, res: Resolution, index_var: Decl, written: set[Decl]) -> None:
    """Arrays the loop writes are read only at x[i]; break leaves only inner loops."""
    targets = {id(n.target) for n in walk(loop.body) if isinstance(n, Assign) and isinstance(n.target, Index)}
    for n in walk(loop.body):
        if isinstance(n, Index) and id(n) not in targets and _array_name(n.obj, res) in written:
            if not _own_index(n.index, res, index_var):
                raise Unsupported(f"'{_array_name(n.obj, res).name}' is written in the loop, so it is read only at [{loop.var}]: "  # type: ignore[union-attr]
                                  "another iteration may be writing there", n.pos)
    for brk in _breaks_of(loop.body.stmts):
        raise Unsupported("break out of the loop of a @gpu function would end the other iterations", brk.pos)


def _breaks_of(stmts: tuple) -> Iterator[Break]:
    """The `break`s that leave the loop these statements are the body of (not inner loops')."""
    for s in stmts:
        if isinstance(s, Break):
            yield s
        elif isinstance(s, (ForRange, ForEach, While)):
            continue
        else:
            for child in walk(s):
                if isinstance(child, Break) and not _inside_inner_loop(s, child):
                    yield child


def _inside_inner_loop(root: Node, target: Node) -> bool:
    for n in walk(root):
        if isinstance(n, (ForRange, ForEach, While)) and any(c is target for c in walk(n)):
            return True
    return False


def _check_calls(typed: Typed, typer: Typer) -> None:
    """Callees are compiled (typed already) and work on numbers and bools only."""
    for call, sig in typed.calls.items():
        callee = typer.done.get(sig)
        name = sig.fn.name
        if callee is None:
            raise Unsupported(f"{name} cannot be compiled by the LLVM tier", call.pos)
        if ARR in sig.params or callee.ret == ARR or ARR in callee.locals.values():
            raise Unsupported(f"{name} works on arrays: functions called from @gpu code take and return numbers "
                              "and bools only", call.pos)
        _check_calls(callee, typer)

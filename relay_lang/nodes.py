"""The Relay AST: small immutable nodes, each with its source position.

Modelled on Python's `ast`: plain data, no behaviour. Nodes compare by
identity (so passes can key side tables on them); their content identity is
`hashing.node_hash`.

The kinds of node are unions of the concrete classes (`Expr`, `Stmt`, `Part`;
see the end of this module): a pass that matches on one and ends with
`case _: assert_never(node)` is checked by mypy to handle every node of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias, TypeVar, dataclass_transform

from .errors import Pos

_N = TypeVar("_N")


@dataclass_transform(frozen_default=True, eq_default=False)
def node(cls: type[_N]) -> type[_N]:
    return dataclass(frozen=True, slots=True, eq=False)(cls)


class Node:
    __slots__ = ()
    pos: Pos


# ---------------------------------------------------------------- expressions


@node
class Num(Node):
    pos: Pos
    value: float


@node
class Str(Node):
    pos: Pos
    value: str


@node
class Bool(Node):
    pos: Pos
    value: bool


@node
class Null(Node):
    pos: Pos


@node
class Name(Node):
    pos: Pos
    name: str


@node
class StateRef(Node):
    """`state`: the running server's private map."""

    pos: Pos


@node
class SelfRef(Node):
    """`self`: the running server's reference."""

    pos: Pos


@node
class ArrayLit(Node):
    pos: Pos
    items: tuple[Expr, ...]


@node
class MapLit(Node):
    pos: Pos
    keys: tuple[str, ...]
    values: tuple[Expr, ...]


@node
class Unary(Node):
    pos: Pos
    op: str  # "-" or "!"
    operand: Expr


@node
class Binary(Node):
    """Arithmetic and comparison: + - * / % ** == != < <= > >=."""

    pos: Pos
    op: str
    left: Expr
    right: Expr


@node
class Logical(Node):
    """Short-circuit operators: && || ??."""

    pos: Pos
    op: str
    left: Expr
    right: Expr


@node
class Range(Node):
    """`start..end`: the numbers start, start+1, ... below end."""

    pos: Pos
    start: Expr
    end: Expr


@node
class Call(Node):
    pos: Pos
    callee: Expr
    args: tuple[Expr, ...]


@node
class Index(Node):
    pos: Pos
    obj: Expr
    index: Expr


@node
class Field(Node):
    pos: Pos
    obj: Expr
    name: str


@node
class MethodCall(Node):
    """`obj.name(args)`: an array method, a map's function field, or a server call."""

    pos: Pos
    obj: Expr
    name: str
    args: tuple[Expr, ...]


@node
class TypeAnn(Node):
    """A type annotation: `number`, `array<number>`, ..."""

    pos: Pos
    name: str
    elem: str | None = None

    def __str__(self) -> str:
        return f"{self.name}<{self.elem}>" if self.elem else self.name


@node
class Param(Node):
    pos: Pos
    name: str
    type: TypeAnn | None


@node
class Directive(Node):
    pos: Pos
    name: str  # "llvm", "gpu", "interpret", "optimize", "fastmath"
    args: tuple[float, ...]


@node
class FnLit(Node):
    """A function: a literal `fn(a) { }`, or the body of a declaration."""

    pos: Pos
    name: str  # "" for anonymous literals
    params: tuple[Param, ...]
    ret_type: TypeAnn | None
    body: Block
    directives: tuple[Directive, ...]


# ----------------------------------------------------------------- statements


@node
class Block(Node):
    pos: Pos
    stmts: tuple[Stmt, ...]


@node
class ExprStmt(Node):
    pos: Pos
    expr: Expr


@node
class Let(Node):
    """`let x = v`, or Relay 0.3's `set x = v` (redeclaration allowed)."""

    pos: Pos
    name: str
    value: Expr
    redeclare: bool


@node
class Assign(Node):
    """`target op value` where op is = += -= *= /= %=."""

    pos: Pos
    target: Name | Index | Field
    op: str
    value: Expr


@node
class If(Node):
    pos: Pos
    cond: Expr
    then: Block
    orelse: Block | If | None


@node
class IfExpr(Node):
    """Relay 0.3's `if` used as a value: `let x = if c { 1 } else { 2 }`.

    Its value is the taken branch's value by the rule for function bodies
    (see "Blocks have values"), or null."""

    pos: Pos
    stmt: If


@node
class While(Node):
    pos: Pos
    cond: Expr
    body: Block


@node
class ForRange(Node):
    """`for var in start..end { }`: both ends evaluated once."""

    pos: Pos
    var: str
    start: Expr
    end: Expr
    body: Block


@node
class ForEach(Node):
    """`for var in xs { }` over an array snapshot or a map's keys."""

    pos: Pos
    var: str
    iterable: Expr
    body: Block


@node
class Break(Node):
    pos: Pos


@node
class Continue(Node):
    pos: Pos


@node
class Return(Node):
    pos: Pos
    value: Expr | None


@node
class FnDecl(Node):
    pos: Pos
    fn: FnLit


@node
class Receive(Node):
    """`receive fn name(...) { }` inside a server."""

    pos: Pos
    fn: FnLit


@node
class ServerDecl(Node):
    """`server name { }`, or a family `server name[id] { }` (key: "id"): one server per key,
    each started at its first message with its own initial state."""

    pos: Pos
    name: str
    state: MapLit | None
    handlers: tuple[Receive, ...]
    helpers: tuple[FnDecl, ...]
    key: str | None = None


@node
class Program(Node):
    pos: Pos
    stmts: tuple[Stmt, ...]


# ---------------------------------------------------------------- node kinds

Expr: TypeAlias = (
    Num | Str | Bool | Null | Name | StateRef | SelfRef | ArrayLit | MapLit | Unary | Binary | Logical | Range | Call
    | Index | Field | MethodCall | FnLit | IfExpr
)
Stmt: TypeAlias = ExprStmt | Let | Assign | If | While | ForRange | ForEach | Break | Continue | Return | FnDecl | ServerDecl
# The parts of functions, servers and programs that are neither.
Part: TypeAlias = TypeAnn | Param | Directive | Block | Receive | Program


def walk(root: object) -> Iterator[Node]:
    """Every node under root (root included), in pre-order with children in field order."""
    stack = [root]
    while stack:
        n = stack.pop()
        if isinstance(n, Node):
            yield n
            stack.extend(reversed([getattr(n, f) for f in n.__dataclass_fields__ if f != "pos"]))  # type: ignore[attr-defined]
        elif isinstance(n, tuple):
            stack.extend(reversed(n))

"""Resolver: binds every name to its declaration before anything runs.

Like the resolver of *Crafting Interpreters*, this pass walks the AST once
and records its findings in side tables keyed by node, for the compiler to
read. It decides, for every variable:

- a global (declared at the top level of a program, or not found at all:
  looked up by name at run time, so functions may call functions declared
  after them), or
- a local slot in its function's frame; locals that an inner function
  captures live in a `Cell` so the closure shares them by reference, or
- a free variable of the current function (a cell taken from an enclosing
  function when the closure was created).

It also reports the static errors: redeclaring a name in the same block,
`break`/`continue` outside a loop, `state`/`self` outside a server (and
`state` in a family's initial state), servers declared below the top level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

from .budget import STATEMENT_CHECK, checkpoint_at
from .builtin_table import BUILTIN_NAMES
from .errors import RelaySyntaxError
from .nodes import (
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
    Node,
    Null,
    Num,
    Program,
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


@dataclass(eq=False)
class Decl:
    name: str
    slot: int
    node: Node
    captured: bool = False


@dataclass(frozen=True)
class Local:
    slot: int
    decl: Decl

    @property
    def captured(self) -> bool:
        return self.decl.captured


@dataclass(frozen=True)
class Free:
    index: int  # into the function's cells


@dataclass(frozen=True)
class Global:
    name: str


Binding = Local | Free | Global


@dataclass(eq=False)
class FunctionInfo:
    """What the compiler needs to build frames and closures of one function."""

    node: FnLit | Program | ServerDecl
    nparams: int = 0
    nslots: int = 0
    # For each free variable: where the *enclosing* function finds the cell.
    free: list[Local | Free] = field(default_factory=list)
    free_decls: list[Decl] = field(default_factory=list)
    params: list[Decl] = field(default_factory=list)


@dataclass
class Resolution:
    bindings: dict[Node, Binding] = field(default_factory=dict)  # Name / declaring node -> binding
    functions: dict[Node, FunctionInfo] = field(default_factory=dict)

    def local(self, node: Node) -> Local:
        """The binding of a node that declares or names a local variable."""
        binding = self.bindings[node]
        assert isinstance(binding, Local), f"{type(node).__name__} at {node.pos} is bound to {binding}"
        return binding


class _FunctionScope:
    def __init__(self, info: FunctionInfo, parent: _FunctionScope | None, is_main: bool) -> None:
        self.info = info
        self.parent = parent
        self.is_main = is_main
        self.blocks: list[dict[str, Decl]] = [{}]
        self.loops = 0

    def lookup_local(self, name: str) -> Decl | None:
        for block in reversed(self.blocks):
            if name in block:
                return block[name]
        return None


class Resolver:
    def __init__(self, globals_declared: set[str] | None = None, allow_redeclare: bool = False) -> None:
        self.res = Resolution()
        self.scope: _FunctionScope | None = None
        # Global names declared so far (kept across REPL entries by the caller).
        self.globals_declared = globals_declared if globals_declared is not None else set()
        self.allow_redeclare = allow_redeclare
        self.server_depth = 0
        self.family_state: str | None = None  # the family whose initial state is being resolved
        self.statements_seen = 0  # the time budget is checked every STATEMENT_CHECK of them

    # ---------------------------------------------------------------- entry

    def resolve_program(self, program: Program) -> Resolution:
        info = FunctionInfo(program)
        self.res.functions[program] = info
        self.scope = _FunctionScope(info, None, is_main=True)
        self.statements(program.stmts)
        return self.res

    # ---------------------------------------------------------------- declarations

    def at_global_level(self) -> bool:
        s = self.scope
        return s is not None and s.is_main and len(s.blocks) == 1

    def declare(self, name: str, node: Node, redeclare: bool = False) -> None:
        if self.at_global_level():
            if name in BUILTIN_NAMES:
                raise RelaySyntaxError(f"'{name}' is a builtin function; choose another name for a top-level declaration", node.pos)
            if name in self.globals_declared and not (redeclare or self.allow_redeclare):
                raise RelaySyntaxError(f"'{name}' is already declared at the top level (use assignment to change it)", node.pos)
            self.globals_declared.add(name)
            self.res.bindings[node] = Global(name)
            return
        self.declare_local(name, node, redeclare)

    def declare_local(self, name: str, node: Node, redeclare: bool = False) -> Decl:
        scope = self.scope
        assert scope is not None
        block = scope.blocks[-1]
        if name in block and not redeclare:
            raise RelaySyntaxError(f"'{name}' is already declared in this block", node.pos)
        decl = Decl(name, scope.info.nslots, node)
        scope.info.nslots += 1
        block[name] = decl
        self.res.bindings[node] = Local(decl.slot, decl)
        return decl

    def lookup(self, name: str, node: Node) -> Binding:
        binding = self._find(self.scope, name)
        self.res.bindings[node] = binding
        return binding

    def _find(self, scope: _FunctionScope | None, name: str) -> Binding:
        if scope is None:
            return Global(name)
        decl = scope.lookup_local(name)
        if decl is not None:
            return Local(decl.slot, decl)
        parent = scope.parent
        if parent is None:
            return Global(name)
        outer = self._find(parent, name)
        if isinstance(outer, Global):
            return outer
        # A variable of an enclosing function: capture it as a free variable.
        decl = outer.decl if isinstance(outer, Local) else parent.info.free_decls[outer.index]
        decl.captured = True
        info = scope.info
        for i, d in enumerate(info.free_decls):
            if d is decl:
                return Free(i)
        info.free.append(outer)
        info.free_decls.append(decl)
        return Free(len(info.free) - 1)

    # ---------------------------------------------------------------- functions

    def function(self, fn: FnLit) -> None:
        info = FunctionInfo(fn, nparams=len(fn.params))
        self.res.functions[fn] = info
        outer = self.scope
        self.scope = _FunctionScope(info, outer, is_main=False)
        for p in fn.params:  # a function's own scope is never the top level
            info.params.append(self.declare_local(p.name, p))
        self.statements(fn.body.stmts)
        self.scope = outer

    def server(self, decl: ServerDecl) -> None:
        if not self.at_global_level():
            raise RelaySyntaxError(f"server {decl.name} must be declared at the top level of the program", decl.pos)
        self.declare(decl.name, decl, redeclare=True)  # redeclaring a server is a hot upgrade
        info = FunctionInfo(decl)
        self.res.functions[decl] = info
        outer = self.scope
        self.scope = _FunctionScope(info, outer, is_main=False)
        self.server_depth += 1
        if decl.state is not None:
            self.family_state = decl.name if decl.key is not None else None
            self.expr(decl.state)
            self.family_state = None
        members = [h.fn for h in decl.handlers] + [h.fn for h in decl.helpers]
        for fn in members:  # hoisted: members may call each other in any order
            self.declare(fn.name, fn)
        for fn in members:
            self.function(fn)
        self.server_depth -= 1
        self.scope = outer

    # ---------------------------------------------------------------- statements

    def statements(self, stmts: tuple[Stmt, ...]) -> None:
        for s in stmts:
            self.stmt(s)

    def block(self, block: Block, loop_var: tuple[str, Node] | None = None) -> None:
        scope = self.scope
        assert scope is not None
        scope.blocks.append({})
        if loop_var is not None:
            self.declare(*loop_var)
        self.statements(block.stmts)
        scope.blocks.pop()

    def loop_body(self, body: Block, loop_var: tuple[str, Node] | None = None) -> None:
        scope = self.scope
        assert scope is not None
        scope.loops += 1
        self.block(body, loop_var)
        scope.loops -= 1

    def stmt(self, s: Stmt) -> None:
        self.statements_seen += 1
        if not self.statements_seen % STATEMENT_CHECK:
            checkpoint_at(s.pos)
        match s:
            case ExprStmt():
                self.expr(s.expr)
            case Let():
                self.let(s)
            case Assign():
                self.expr(s.value)
                self.expr(s.target)
            case If():
                self.expr(s.cond)
                self.block(s.then)
                if isinstance(s.orelse, Block):
                    self.block(s.orelse)
                elif s.orelse is not None:
                    self.stmt(s.orelse)
            case While():
                self.expr(s.cond)
                self.loop_body(s.body)
            case ForRange():
                self.expr(s.start)
                self.expr(s.end)
                self.loop_body(s.body, (s.var, s))
            case ForEach():
                self.expr(s.iterable)
                self.loop_body(s.body, (s.var, s))
            case Break() | Continue():
                if self.scope is None or self.scope.loops == 0:
                    word = "break" if isinstance(s, Break) else "continue"
                    raise RelaySyntaxError(f"'{word}' outside of a loop", s.pos)
            case Return():
                if s.value is not None:
                    self.expr(s.value)
            case FnDecl():
                self.declare(s.fn.name, s)
                self.function(s.fn)
            case ServerDecl():
                self.server(s)
            case _:
                assert_never(s)

    def let(self, s: Let) -> None:
        if isinstance(s.value, FnLit):
            # `let f = fn() { f() }`: a function literal sees its own name.
            self.declare(s.name, s, s.redeclare)
            self.expr(s.value)
        else:
            self.expr(s.value)
            self.declare(s.name, s, s.redeclare)

    # ---------------------------------------------------------------- expressions

    def expr(self, e: Expr) -> None:
        match e:
            case Name():
                self.lookup(e.name, e)
            case Binary() | Logical():
                self.expr(e.left)
                self.expr(e.right)
            case Unary():
                self.expr(e.operand)
            case Range():
                self.expr(e.start)
                self.expr(e.end)
            case Call():
                self.expr(e.callee)
                self.exprs(e.args)
            case MethodCall():
                self.expr(e.obj)
                self.exprs(e.args)
            case Index():
                self.expr(e.obj)
                self.expr(e.index)
            case Field():
                self.expr(e.obj)
            case ArrayLit():
                self.exprs(e.items)
            case MapLit():
                self.exprs(e.values)
            case FnLit():
                self.function(e)
            case IfExpr():
                self.stmt(e.stmt)
            case StateRef() | SelfRef():
                if self.server_depth == 0:
                    word = "state" if isinstance(e, StateRef) else "self"
                    raise RelaySyntaxError(f"'{word}' is only available inside a server", e.pos)
                if isinstance(e, StateRef) and self.family_state is not None:
                    raise RelaySyntaxError(f"'state' cannot be read while the initial state of family {self.family_state} "
                                           "is made (self and self.id can)", e.pos)
            case Num() | Str() | Bool() | Null():
                pass
            case _:
                assert_never(e)

    def exprs(self, es: tuple[Expr, ...]) -> None:
        for e in es:
            self.expr(e)


def resolve(program: Program, globals_declared: set[str] | None = None,
            allow_redeclare: bool = False) -> Resolution:
    return Resolver(globals_declared, allow_redeclare).resolve_program(program)

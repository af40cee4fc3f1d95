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
`break`/`continue` outside a loop, `state`/`self` outside a server, servers
declared below the top level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .builtin_table import BUILTIN_NAMES
from .errors import RelaySyntaxError
from .nodes import (
    ArrayLit,
    Assign,
    Binary,
    Block,
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
    Program,
    Range,
    Return,
    SelfRef,
    ServerDecl,
    StateRef,
    Stmt,
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

    node: Node  # FnLit, Program or ServerDecl
    nparams: int = 0
    nslots: int = 0
    # For each free variable: where the *enclosing* function finds the cell.
    free: list[Binding] = field(default_factory=list)
    free_decls: list[Decl] = field(default_factory=list)
    params: list[Decl] = field(default_factory=list)


@dataclass
class Resolution:
    bindings: dict[Node, Binding] = field(default_factory=dict)  # Name / declaring node -> binding
    functions: dict[Node, FunctionInfo] = field(default_factory=dict)


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
        scope = self.scope
        assert scope is not None
        if self.at_global_level():
            if name in BUILTIN_NAMES:
                raise RelaySyntaxError(f"'{name}' is a builtin function; choose another name for a top-level declaration", node.pos)
            if name in self.globals_declared and not (redeclare or self.allow_redeclare):
                raise RelaySyntaxError(f"'{name}' is already declared at the top level (use assignment to change it)", node.pos)
            self.globals_declared.add(name)
            self.res.bindings[node] = Global(name)
            return
        block = scope.blocks[-1]
        if name in block and not redeclare:
            raise RelaySyntaxError(f"'{name}' is already declared in this block", node.pos)
        decl = Decl(name, scope.info.nslots, node)
        scope.info.nslots += 1
        block[name] = decl
        self.res.bindings[node] = Local(decl.slot, decl)

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
        outer = self._find(scope.parent, name)
        if isinstance(outer, Global):
            return outer
        # A variable of an enclosing function: capture it as a free variable.
        decl = outer.decl if isinstance(outer, Local) else scope.parent.info.free_decls[outer.index]  # type: ignore[union-attr]
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
        for p in fn.params:
            self.declare(p.name, p)
            info.params.append(self.res.bindings[p].decl)  # type: ignore[union-attr]
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
            self.expr(decl.state)
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
        t = type(s)
        if t is ExprStmt:
            self.expr(s.expr)  # type: ignore[attr-defined]
        elif t is Let:
            if isinstance(s.value, FnLit):  # type: ignore[attr-defined]
                # `let f = fn() { f() }`: a function literal sees its own name.
                self.declare(s.name, s, s.redeclare)  # type: ignore[attr-defined]
                self.expr(s.value)  # type: ignore[attr-defined]
            else:
                self.expr(s.value)  # type: ignore[attr-defined]
                self.declare(s.name, s, s.redeclare)  # type: ignore[attr-defined]
        elif t is Assign:
            self.expr(s.value)  # type: ignore[attr-defined]
            self.expr(s.target)  # type: ignore[attr-defined]
        elif t is If:
            self.expr(s.cond)  # type: ignore[attr-defined]
            self.block(s.then)  # type: ignore[attr-defined]
            orelse = s.orelse  # type: ignore[attr-defined]
            if isinstance(orelse, Block):
                self.block(orelse)
            elif orelse is not None:
                self.stmt(orelse)
        elif t is While:
            self.expr(s.cond)  # type: ignore[attr-defined]
            self.loop_body(s.body)  # type: ignore[attr-defined]
        elif t is ForRange:
            self.expr(s.start)  # type: ignore[attr-defined]
            self.expr(s.end)  # type: ignore[attr-defined]
            self.loop_body(s.body, (s.var, s))  # type: ignore[attr-defined]
        elif t is ForEach:
            self.expr(s.iterable)  # type: ignore[attr-defined]
            self.loop_body(s.body, (s.var, s))  # type: ignore[attr-defined]
        elif t is Break or t is Continue:
            if self.scope is None or self.scope.loops == 0:
                word = "break" if t is Break else "continue"
                raise RelaySyntaxError(f"'{word}' outside of a loop", s.pos)
        elif t is Return:
            if s.value is not None:  # type: ignore[attr-defined]
                self.expr(s.value)  # type: ignore[attr-defined]
        elif t is FnDecl:
            self.declare(s.fn.name, s)  # type: ignore[attr-defined]
            self.function(s.fn)  # type: ignore[attr-defined]
        elif t is ServerDecl:
            self.server(s)  # type: ignore[arg-type]
        else:  # pragma: no cover - the parser makes no other statements
            raise AssertionError(f"unknown statement {t.__name__}")

    # ---------------------------------------------------------------- expressions

    def expr(self, e: Expr) -> None:
        t = type(e)
        if t is Name:
            self.lookup(e.name, e)  # type: ignore[attr-defined]
        elif t is Binary or t is Logical:
            self.expr(e.left)  # type: ignore[attr-defined]
            self.expr(e.right)  # type: ignore[attr-defined]
        elif t is Unary:
            self.expr(e.operand)  # type: ignore[attr-defined]
        elif t is Range:
            self.expr(e.start)  # type: ignore[attr-defined]
            self.expr(e.end)  # type: ignore[attr-defined]
        elif t is Call:
            self.expr(e.callee)  # type: ignore[attr-defined]
            for a in e.args:  # type: ignore[attr-defined]
                self.expr(a)
        elif t is MethodCall:
            self.expr(e.obj)  # type: ignore[attr-defined]
            for a in e.args:  # type: ignore[attr-defined]
                self.expr(a)
        elif t is Index:
            self.expr(e.obj)  # type: ignore[attr-defined]
            self.expr(e.index)  # type: ignore[attr-defined]
        elif t is Field:
            self.expr(e.obj)  # type: ignore[attr-defined]
        elif t is ArrayLit:
            for item in e.items:  # type: ignore[attr-defined]
                self.expr(item)
        elif t is MapLit:
            for v in e.values:  # type: ignore[attr-defined]
                self.expr(v)
        elif t is FnLit:
            self.function(e)  # type: ignore[arg-type]
        elif t is IfExpr:
            self.stmt(e.stmt)  # type: ignore[attr-defined]
        elif t is StateRef or t is SelfRef:
            if self.server_depth == 0:
                word = "state" if t is StateRef else "self"
                raise RelaySyntaxError(f"'{word}' is only available inside a server", e.pos)


def resolve(program: Program, globals_declared: set[str] | None = None,
            allow_redeclare: bool = False) -> Resolution:
    return Resolver(globals_declared, allow_redeclare).resolve_program(program)

"""Typing: the first stage of the compiled tier.

Infers a type for every local and expression of a function specialised on
its argument types, or says precisely why the function is outside the
compilable subset (`Unsupported`, with the position of the first offending
node). The subset: numbers (double), bools (i1), arrays of numbers (real
Relay arrays, shared with the interpreter), calls to top-level functions
(recursion included) and the math builtins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

from ..builtin_table import MATH1, MATH2
from ..errors import Pos
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
    Node,
    Null,
    Num,
    Range,
    Return,
    SelfRef,
    ServerDecl,
    StateRef,
    Stmt,
    Str,
    TypeAnn,
    Unary,
    While,
    walk,
)
from ..resolver import Decl, Free, Global, Local, Resolution
from ..values import with_article

NUM, BOOL, ARR, NULL = "number", "bool", "array<number>", "null"
WHAT = {
    Str: "strings", MapLit: "maps", Field: "map fields", FnLit: "function literals (closures)",
    StateRef: "server state", IfExpr: "if expressions", SelfRef: "server references", Null: "null values", Range: "ranges as values",
    FnDecl: "nested function declarations", ServerDecl: "servers",
}


class Unsupported(Exception):
    """Why a function cannot be compiled, and where."""

    def __init__(self, reason: str, pos: Pos) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos

    def describe(self) -> str:
        return f"line {self.pos.line}: {self.reason}"


def param_type(ann: TypeAnn | None) -> str | None:
    """The compiled type an annotation asks for; None when the annotation cannot compile."""
    if ann is None or ann.name == "number":
        return NUM
    if ann.name == "bool":
        return BOOL
    if ann.name == "array":
        return ARR
    return None


def annotation_holds(ann: TypeAnn | None, t: str) -> bool:
    """Whether every value of compiled type t passes the annotation (return annotations)."""
    if ann is None or ann.name == "any":
        return True
    return {NUM: "number", BOOL: "bool", ARR: "array", NULL: "null"}[t] == ann.name and ann.elem in (None, "number")


@dataclass(frozen=True)
class Signature:
    """A function specialised on argument types."""

    fn: FnLit
    params: tuple[str, ...]

    @property
    def symbol(self) -> str:
        types = "_".join({NUM: "d", BOOL: "b", ARR: "a", NULL: "n"}[t] for t in self.params)
        return f"relay_{self.fn.name}_{types}"


@dataclass(eq=False)
class Typed:
    """What lowering needs about one specialised function."""

    sig: Signature
    ret: str = ""
    locals: dict[Decl, str] = field(default_factory=dict)
    exprs: dict[Node, str] = field(default_factory=dict)
    calls: dict[Node, Signature] = field(default_factory=dict)  # Call node -> callee
    builtins: dict[Node, str] = field(default_factory=dict)  # Call/MethodCall node -> builtin name
    writes_arrays: dict[Node, bool] = field(default_factory=dict)  # ForEach -> body may change arrays


class _Retry(Exception):
    """A recursive call needed the return type before any return was seen."""


class Typer:
    """Types a group of functions: a root and every function it calls."""

    def __init__(self, res: Resolution, top_level: dict[str, FnLit]) -> None:
        self.res = res
        self.top_level = top_level  # statically bound global names
        self.done: dict[Signature, Typed] = {}
        self.in_progress: dict[Signature, Typed] = {}
        self.assumed: dict[Signature, str] = {}

    def function(self, sig: Signature) -> Typed:
        if sig in self.done:
            return self.done[sig]
        if sig in self.in_progress:
            typed = self.in_progress[sig]
            if typed.ret:
                return typed
            if sig in self.assumed:
                typed.ret = self.assumed[sig]
                return typed
            raise _Retry
        for assumption in (None, NUM, BOOL, ARR, NULL):
            if assumption is not None:
                self.assumed[sig] = assumption
            before = set(self.done)
            try:
                typed = self._infer(sig)
            except _Retry:
                if assumption is not None:
                    raise
                continue
            finally:
                self.assumed.pop(sig, None)
            if assumption is None or typed.ret == assumption:
                self.done[sig] = typed
                return typed
            for s in set(self.done) - before:  # typed under a wrong assumption
                del self.done[s]
        raise Unsupported(f"cannot infer the return type of recursive function {sig.fn.name}", sig.fn.pos)

    def _infer(self, sig: Signature) -> Typed:
        fn = sig.fn
        typed = Typed(sig)
        self.in_progress[sig] = typed
        try:
            info = self.res.functions[fn]
            if info.free:
                raise Unsupported(f"{fn.name} captures variables of an enclosing function", fn.pos)
            for decl, t in zip(info.params, sig.params):
                typed.locals[decl] = t
            _FunctionTyper(self, typed).body(fn.body.stmts)
            if not typed.ret:
                typed.ret = NULL
        finally:
            del self.in_progress[sig]
        return typed


class _FunctionTyper:
    def __init__(self, typer: Typer, typed: Typed) -> None:
        self.typer = typer
        self.typed = typed
        self.res = typer.res

    # ---------------------------------------------------------------- helpers

    def unsupported(self, node: Node, what: str | None = None) -> Unsupported:
        what = what or WHAT.get(type(node), type(node).__name__)
        return Unsupported(f"{what} are not supported by @llvm", node.pos)

    def returns(self, t: str, node: Node) -> None:
        ret = self.typed.ret
        if ret and ret != t:
            raise Unsupported(f"{self.typed.sig.fn.name} returns {ret} on one path and {t} on another", node.pos)
        self.typed.ret = t

    def expect(self, e: Expr, want: str, context: str) -> str:
        t = self.expr(e)
        if t != want:
            raise Unsupported(f"{context} must be {with_article(want)} in compiled code, got {t}", e.pos)
        return t

    # ---------------------------------------------------------------- statements

    def body(self, stmts: tuple[Stmt, ...]) -> None:
        """A function body: the last statement may give the value (block values)."""
        for s in stmts[:-1]:
            self.stmt(s)
        ends = bool(stmts) and self.tail(stmts[-1])
        if not ends:
            self.returns(NULL, stmts[-1] if stmts else self.typed.sig.fn)

    def tail(self, s: Stmt) -> bool:
        """Types a statement in tail position; True when every path through it returns."""
        if isinstance(s, ExprStmt):
            self.returns(self.expr(s.expr), s)
            return True
        if isinstance(s, If) and s.orelse is not None:
            self.expect(s.cond, BOOL, "an if condition")
            then = self.block_tail(s.then)
            orelse = self.block_tail(s.orelse) if isinstance(s.orelse, Block) else self.tail(s.orelse)
            return then and orelse
        if isinstance(s, If):
            self.expect(s.cond, BOOL, "an if condition")
            self.block_tail(s.then)
            return False
        self.stmt(s)
        return isinstance(s, Return)

    def block_tail(self, block: Block) -> bool:
        for s in block.stmts[:-1]:
            self.stmt(s)
        return bool(block.stmts) and self.tail(block.stmts[-1])

    def block(self, block: Block) -> None:
        for s in block.stmts:
            self.stmt(s)

    def declare(self, node: Node, t: str) -> None:
        binding = self.res.bindings[node]
        if not isinstance(binding, Local):
            raise Unsupported("global variables are not supported by @llvm", node.pos)
        if binding.captured:
            raise Unsupported("variables captured by closures are not supported by @llvm", node.pos)
        old = self.typed.locals.get(binding.decl)
        if old is not None and old != t:
            raise Unsupported(f"'{binding.decl.name}' holds {with_article(old)} and {with_article(t)}", node.pos)
        self.typed.locals[binding.decl] = t

    def stmt(self, s: Stmt) -> None:
        match s:
            case ExprStmt():
                self.expr(s.expr)
            case Let():
                self.declare(s, self.expr(s.value))
            case Assign():
                self.assign(s)
            case If():
                self.expect(s.cond, BOOL, "an if condition")
                self.block(s.then)
                if isinstance(s.orelse, Block):
                    self.block(s.orelse)
                elif s.orelse is not None:
                    self.stmt(s.orelse)
            case While():
                self.expect(s.cond, BOOL, "a while condition")
                self.block(s.body)
            case ForRange():
                self.expect(s.start, NUM, "a range start")
                self.expect(s.end, NUM, "a range end")
                self.declare(s, NUM)
                self.block(s.body)
            case ForEach():
                self.expect(s.iterable, ARR, "a for-in collection")
                self.declare(s, NUM)
                self.block(s.body)
                self.typed.writes_arrays[s] = _may_write_arrays(s.body)
            case Break() | Continue():
                pass
            case Return():
                self.returns(NULL if s.value is None else self.expr(s.value), s)
            case FnDecl() | ServerDecl():
                raise self.unsupported(s)
            case _:
                assert_never(s)

    def assign(self, s: Assign) -> None:
        value = self.expr(s.value)
        target = s.target
        if s.op != "=" and value != NUM:
            raise Unsupported(f"'{s.op}' needs a number, got {value}", s.value.pos)
        if isinstance(target, Name):
            binding = self.res.bindings[target]
            if isinstance(binding, Global):
                raise Unsupported("global variables are not supported by @llvm", target.pos)
            if isinstance(binding, Free) or binding.captured:
                raise Unsupported("variables captured by closures are not supported by @llvm", target.pos)
            old = self.typed.locals[binding.decl]
            if old != value or (s.op != "=" and old != NUM):
                raise Unsupported(f"'{target.name}' holds {with_article(old)}, assigned {with_article(value)}", s.pos)
            self.typed.exprs[target] = old
        elif isinstance(target, Index):
            self.expect(target.obj, ARR, "an indexed value")
            self.expect(target.index, NUM, "an index")
            if value != NUM:
                raise Unsupported(f"arrays in compiled code hold numbers, assigned {with_article(value)}", s.value.pos)
        else:
            raise self.unsupported(target)

    # ---------------------------------------------------------------- expressions

    def expr(self, e: Expr) -> str:
        t = self._expr(e)
        self.typed.exprs[e] = t
        return t

    def _expr(self, e: Expr) -> str:
        match e:
            case Num():
                return NUM
            case Bool():
                return BOOL
            case Name():
                return self.name(e)
            case Binary():
                return self.binary(e)
            case Logical():
                return self.logical(e)
            case Unary():
                if e.op == "-":
                    self.expect(e.operand, NUM, "the operand of '-'")
                    return NUM
                self.expect(e.operand, BOOL, "the operand of '!'")
                return BOOL
            case Call():
                return self.call(e)
            case MethodCall():
                return self.method_call(e)
            case Index():
                self.expect(e.obj, ARR, "an indexed value")
                self.expect(e.index, NUM, "an index")
                return NUM
            case ArrayLit():
                for item in e.items:
                    self.expect(item, NUM, "an array element")
                return ARR
            case Field(obj=SelfRef(), name="id"):
                raise self.unsupported(e, "server keys (self.id)")
            case Str() | Null() | StateRef() | SelfRef() | MapLit() | Range() | Field() | FnLit() | IfExpr():
                raise self.unsupported(e)
            case _:
                assert_never(e)

    def name(self, e: Name) -> str:
        binding = self.res.bindings[e]
        if isinstance(binding, Local) and not binding.captured:
            return self.typed.locals[binding.decl]
        if isinstance(binding, Global):
            raise Unsupported(f"global variable '{e.name}' is not supported by @llvm (only calls to "
                              "top-level functions)", e.pos)
        raise Unsupported("variables captured by closures are not supported by @llvm", e.pos)

    def logical(self, e: Logical) -> str:
        if e.op == "??":
            raise Unsupported("'??' is not supported by @llvm (there is no null in compiled code)", e.pos)
        self.expect(e.left, BOOL, f"an operand of '{e.op}'")
        self.expect(e.right, BOOL, f"an operand of '{e.op}'")
        return BOOL

    def method_call(self, e: MethodCall) -> str:
        if e.name != "push" or len(e.args) != 1:
            raise Unsupported(f"method '{e.name}' is not supported by @llvm (only a.push(x))", e.pos)
        self.expect(e.obj, ARR, "the receiver of push")
        self.expect(e.args[0], NUM, "a pushed value")
        self.typed.builtins[e] = "push"
        return NUM

    def binary(self, e: Binary) -> str:
        left = self.expr(e.left)
        right = self.expr(e.right)
        if e.op in ("==", "!="):
            if left != right or left == ARR:
                raise Unsupported(f"'{e.op}' between {left} and {right} is not supported by @llvm", e.pos)
            return BOOL
        if left != NUM or right != NUM:
            what = "strings" if e.op == "+" else f"'{e.op}' on {left} and {right}"
            raise Unsupported(f"{what} are not supported by @llvm" if e.op == "+" else f"{what} is not supported by @llvm",
                              e.pos)
        return BOOL if e.op in ("<", "<=", ">", ">=") else NUM

    def call(self, e: Call) -> str:
        callee = e.callee
        if not isinstance(callee, Name):
            raise Unsupported("calls of computed functions are not supported by @llvm", e.pos)
        binding = self.res.bindings[callee]
        args = [self.expr(a) for a in e.args]
        if isinstance(binding, Global):
            name = callee.name
            if name in self.typer.top_level:
                fn = self.typer.top_level[name]
                if len(args) != len(fn.params):
                    raise Unsupported(f"{name} expects {len(fn.params)} arguments, got {len(args)}", e.pos)
                for a, p in zip(args, fn.params):
                    if p.type is not None and p.type.name != "any" and param_type(p.type) != a:
                        raise Unsupported(f"{name}: parameter '{p.name}' expects {p.type}, got {a}", e.pos)
                sig = Signature(fn, tuple(args))
                self.typed.calls[e] = sig
                return self.typer.function(sig).ret
            return self.builtin(name, args, e)
        raise Unsupported("calls of local function values are not supported by @llvm", e.pos)

    def builtin(self, name: str, args: list[str], e: Call) -> str:
        self.typed.builtins[e] = name
        if name in MATH1 or name in MATH2 or name in ("min", "max"):
            arity = 1 if name in MATH1 else 2 if name in MATH2 else None
            if (arity is not None and len(args) != arity) or not args or any(a != NUM for a in args):
                raise Unsupported(f"{name} takes {arity or 'some'} number(s) in compiled code", e.pos)
            return NUM
        if name == "len" and args == [ARR]:
            return NUM
        if name == "push" and args == [ARR, NUM]:
            return NUM
        if name == "array" and args == [NUM, NUM]:
            return ARR
        if name in ("print", "str", "join", "split", "num"):
            raise Unsupported(f"{name} is not supported by @llvm (it works on strings)", e.pos)
        raise Unsupported(f"builtin {name}({', '.join(args)}) is not supported by @llvm", e.pos)


def _may_write_arrays(body: Block) -> bool:
    """Whether a loop body might change an array (element writes, push, calls)."""
    return any(isinstance(n, (Call, MethodCall)) or (isinstance(n, Assign) and isinstance(n.target, Index))
               for n in walk(body))


def enumerate_nodes(fn: FnLit) -> dict[int, Node]:
    """Node ordinals in canonical order: positions in object code refer to these."""
    return dict(enumerate(walk(fn)))

"""Compiles resolved Relay code to Python source, once per program.

Every Relay function becomes one Python function. Expressions are flattened
into three-address code (one operation per line, temporaries `tN`), with the
float-float case of each operator inline and every other case handed to
`ops`. Each generated line remembers the Relay position it came from, so an
error raised anywhere is placed at its file:line:col, and the Relay call stack
is read back from the Python traceback: nothing is spent on bookkeeping
while nothing fails.

Names in the generated code: `lN_x` a local (holding a `Cell` when captured),
`_c` the closure's cells, `g_x` a global, `tN` a temporary, `_...` runtime
support bound by the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard, assert_never

from .budget import STATEMENT_CHECK, checkpoint_at
from .builtin_table import ARITY as BUILTIN_ARITY
from .builtin_table import BUILTIN_NAMES
from .emitter import Emitter, FunctionCode, Unit, global_name
from .errors import Pos, RelaySyntaxError
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
    TypeAnn,
    Unary,
    While,
)
from .ops import BIG_STRING
from .resolver import Binding, Free, FunctionInfo, Global, Local, Resolution

Sink = Callable[[str, "Pos | None"], None]  # where a block's value goes: a return, or a temporary

MAX_LOOP_NESTING = 18  # CPython allows 20 statically nested blocks per function

LITERAL_STARTS = frozenset("'\"0123456789-.")  # how number and string literals begin in generated code
INLINE_STRING = 1 << 12  # characters: a longer string literal is a constant of the unit, not generated text
ARITH_SLOW = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod", "**": "_pow"}
COMPARE = ("<", "<=", ">", ">=")
COMPOUND = {"+=": "+", "-=": "-", "*=": "*", "/=": "/", "%=": "%"}
TYPE_TESTS = {
    "number": "type({v}) is float", "string": "type({v}) is str", "bool": "type({v}) is bool",
    "null": "{v} is None", "array": "type({v}) is _Array", "map": "type({v}) is dict",
    "fn": "type({v}) in _FNTYPES", "server": "type({v}) is _ServerRef",
    "function": "type({v}) in _FNTYPES", "object": "type({v}) is dict",  # Relay 0.3's names
}

# Static types the generator tracks for atoms, to skip checks it can prove.
NUM, BOOL, STR = "number", "bool", "string"
STRING_BUILTINS = ("str", "string", "join")  # builtins whose value is always a string


class CodeGen(Emitter):
    """The generator: one method per kind of node, emitting its lines into the function being made."""

    def __init__(self, res: Resolution, unit_id: int, file: str) -> None:
        super().__init__(unit_id, file)
        self.res = res
        self.statements_seen = 0  # the time budget is checked every STATEMENT_CHECK of them

    # ------------------------------------------------------------ units

    def program(self, program: Program) -> Unit:
        info = self.res.functions[program]
        main = self.begin(info, "main", "<main>")
        self.body(program.stmts)
        self.finish()
        return self.assemble(main.pyname)

    # ------------------------------------------------------------ functions

    def function(self, fn_node: FnLit) -> str:
        """Generates a Relay function; returns the expression of its FunctionCode."""
        info = self.res.functions[fn_node]
        name = fn_node.name or "anonymous"
        gen = self.begin(info, "fn", name)
        gen.ret_type = fn_node.ret_type
        code = FunctionCode(fn_node.name, fn_node, len(fn_node.params),
                            tuple(p.name for p in fn_node.params),
                            tuple(p.type for p in fn_node.params), fn_node.ret_type, gen.pyname)
        self.codes.append(code)
        self.emit("_d = _D[0] + 1", fn_node.pos)  # this call's depth, restored from the local on return
        self.emit("_D[0] = _d", fn_node.pos)
        self.emit("if _d > _LIMIT: _too_deep()", fn_node.pos)
        for i, (p, decl) in enumerate(zip(fn_node.params, info.params)):
            var = self.local_name(decl)
            if p.type is not None and p.type.name != "any":
                test = self.type_test(p.type, var)
                self.emit(f"if not ({test}): _bad_arg({self.const(code)}, {i}, {var})", p.pos)
            if decl.captured:
                self.emit(f"{var} = _Cell({var})")
        self.body(fn_node.body.stmts)
        self.finish()
        return self.const(code)

    def type_test(self, ann: TypeAnn, var: str) -> str:
        if ann.elem == "number":
            return f"_all_numbers({var})"
        return TYPE_TESTS[ann.name].format(v=var)

    def emit_return(self, value: str, pos: Pos | None) -> None:
        fn = self.fn
        if fn.kind == "fn":
            if fn.ret_type is not None and fn.ret_type.name != "any":
                value = self.subject(value)
                test = self.type_test(fn.ret_type, value)
                code = self.const(fn.ret_type)
                self.emit(f"if not ({test}): _bad_return({code}, {value!s}, {fn.relay_name!r})", pos)
            self.emit("_D[0] = _d - 1")
        self.emit(f"return {value}", pos)

    def body(self, stmts: tuple[Stmt, ...]) -> None:
        """A function body: its last statement gives the value (see 'Blocks have values')."""
        for s in stmts[:-1]:
            self.stmt(s)
        if stmts:
            self.tail(stmts[-1], self.emit_return)
        self.emit_return("None", None)

    def tail(self, s: Stmt, sink: Sink) -> None:
        """The last statement of a block that gives a value: the value goes to sink."""
        if isinstance(s, ExprStmt):
            sink(self.expr(s.expr), s.pos)
        elif isinstance(s, If):
            self.if_stmt(s, sink)
        else:
            self.stmt(s)

    def block(self, block: Block, sink: Sink | None = None) -> None:
        self.fn.indent += 1
        for s in block.stmts[:-1] if sink else block.stmts:
            self.stmt(s)
        if sink and block.stmts:
            self.tail(block.stmts[-1], sink)
        self.emit("pass")
        self.fn.indent -= 1

    def if_expr(self, e: IfExpr) -> str:
        t = self.temp()
        self.emit(f"{t} = None")
        self.if_stmt(e.stmt, lambda value, pos: self.emit(f"{t} = {value}", pos))
        return t

    # ------------------------------------------------------------ statements

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
                self.assign(s)
            case If():
                self.if_stmt(s)
            case While():
                self.while_stmt(s)
            case ForRange():
                self.for_range(s)
            case ForEach():
                self.for_each(s)
            case Break():
                self.emit("break", s.pos)
            case Continue():
                self.emit("continue", s.pos)
            case Return():
                value = "None" if s.value is None else self.expr(s.value)
                self.emit_return(value, s.pos)
            case FnDecl():
                self.bind_new(s, s.fn.name, lambda: self.closure(s.fn), fn_value=True)
            case ServerDecl():
                self.server(s)
            case _:
                assert_never(s)

    def bind_new(self, node: Node, name: str, value: Callable[[], str], fn_value: bool = False) -> None:
        """Declares `name` (bound to node by the resolver) and stores value() in it."""
        binding = self.res.bindings[node]
        if isinstance(binding, Global):
            self.fn.assigned_globals.add(name)
            v = value()
            self.emit(f"{global_name(name)} = {v}", node.pos)
            return
        assert isinstance(binding, Local)  # a declaration is never a free variable
        var = self.local_name(binding.decl)
        if binding.captured:
            if fn_value:  # the function may refer to itself: the cell must exist first
                self.emit(f"{var} = _Cell(None)")
                self.emit(f"{var}.v = {value()}", node.pos)
            else:
                self.emit(f"{var} = _Cell({value()})", node.pos)
        else:
            self.emit(f"{var} = {value()}", node.pos)

    def let(self, s: Let) -> None:
        self.bind_new(s, s.name, lambda: self.expr(s.value), fn_value=isinstance(s.value, FnLit))

    def read_var(self, binding: Binding, name: str, pos: Pos) -> str:
        if isinstance(binding, Local):
            var = self.local_name(binding.decl)
            if not binding.captured:
                return var
            source = f"{var}.v"
        elif isinstance(binding, Free):
            source = f"_c[{binding.index}].v"
        else:
            source = global_name(name)
        t = self.temp()
        self.emit(f"{t} = {source}", pos)
        return t

    def write_var(self, binding: Binding, name: str, value: str, pos: Pos) -> None:
        if isinstance(binding, Local):
            var = self.local_name(binding.decl)
            self.emit(f"{var}.v = {value}" if binding.captured else f"{var} = {value}", pos)
        elif isinstance(binding, Free):
            self.emit(f"_c[{binding.index}].v = {value}", pos)
        elif name in BUILTIN_NAMES:
            self.emit(f"_fail({f'cannot assign to builtin {name!r}'!r})", pos)
        else:
            self.fn.assigned_globals.add(name)
            self.emit(f"if {global_name(name)!r} not in _G: _undefined({name!r})", pos)
            self.emit(f"{global_name(name)} = {value}", pos)

    def assign(self, s: Assign) -> None:
        target = s.target
        op = COMPOUND.get(s.op)
        if isinstance(target, Name):
            binding = self.res.bindings[target]
            if op is None:
                value = self.expr(s.value)
            else:
                current = self.read_var(binding, target.name, target.pos)
                value = self.arith(op, (current, None), self.typed(s.value), s.pos)[0]
            self.write_var(binding, target.name, value, target.pos)
        elif isinstance(target, Index):
            obj = self.expr(target.obj)
            key = self.expr(target.index)
            if op is None:
                value = self.expr(s.value)
            else:
                current = self.index_read(obj, key, target.pos)
                value = self.arith(op, (current, None), self.typed(s.value), s.pos)[0]
            self.emit(f"if type({obj}) is _Array: {obj}[{key}] = {value}", target.pos)
            self.emit(f"else: _set_index({obj}, {key}, {value})", target.pos)
        else:
            if isinstance(target.obj, StateRef):  # state.NAME = v: the server learns which field changed
                if op is None:
                    value = self.expr(s.value)
                else:
                    current = self.assign_temp(f"_state_field({target.name!r})", target.pos)
                    value = self.arith(op, (current, None), self.typed(s.value), s.pos)[0]
                self.emit(f"_state_set({target.name!r}, {value})", target.pos)
            else:
                obj = self.expr(target.obj)
                if op is None:
                    value = self.expr(s.value)
                else:
                    current = self.field_read(obj, target.name, target.pos)
                    value = self.arith(op, (current, None), self.typed(s.value), s.pos)[0]
                self.emit(f"if type({obj}) is dict: {obj}[{target.name!r}] = {value}", target.pos)
                self.emit(f"else: _set_field({obj}, {target.name!r}, {value})", target.pos)

    def truth_test(self, typed: tuple[str, str | None]) -> str:
        atom, kind = typed
        if kind == BOOL:
            return atom
        atom = self.subject(atom)
        return f"{atom} is not False and {atom} is not None"

    def subject(self, atom: str) -> str:
        """An atom that may stand before `is`: a literal goes through a temporary first
        (`'a' is None` is a SyntaxWarning in CPython, an error under -W error)."""
        return self.assign_temp(atom, None) if atom[:1] in LITERAL_STARTS else atom

    def if_stmt(self, s: If, sink: Sink | None = None) -> None:
        chain: list[tuple[Expr, Block]] = [(s.cond, s.then)]
        orelse = s.orelse
        while isinstance(orelse, If):
            chain.append((orelse.cond, orelse.then))
            orelse = orelse.orelse
        if len(chain) == 1:
            self.emit(f"if {self.truth_test(self.typed(s.cond))}:", s.pos)
            self.block(s.then, sink)
            if orelse is not None:
                self.emit("else:")
                self.block(orelse, sink)
            return
        # An else-if chain stays flat (CPython limits indentation depth):
        # a flag says whether a branch has been taken yet.
        flag = self.temp()
        self.emit(f"{flag} = True")
        for i, (cond, then) in enumerate(chain):
            if i:
                self.emit(f"if {flag}:")
                self.fn.indent += 1
            self.emit(f"if {self.truth_test(self.typed(cond))}:", cond.pos)
            self.fn.indent += 1
            self.emit(f"{flag} = False")
            self.fn.indent -= 1
            self.block(then, sink)
            if i:
                self.fn.indent -= 1
        if orelse is not None:
            self.emit(f"if {flag}:")
            self.block(orelse, sink)

    def loop_enter(self, pos: Pos) -> None:
        self.fn.loops += 1
        if self.fn.loops > MAX_LOOP_NESTING:
            raise RelaySyntaxError(f"loops nested too deeply (at most {MAX_LOOP_NESTING} in one function)", pos)

    def loop_body(self, body: Block, pos: Pos, prologue: list[str]) -> None:
        self.fn.indent += 1
        self.emit("if _stop: _interrupted()", pos)
        for line in prologue:
            self.emit(line, pos)
        self.fn.indent -= 1
        self.block(body)
        self.fn.loops -= 1

    def while_stmt(self, s: While) -> None:
        self.loop_enter(s.pos)
        self.emit("while True:", s.pos)
        self.fn.indent += 1
        self.emit("if _stop: _interrupted()", s.pos)
        cond = self.truth_test(self.typed(s.cond))
        self.emit(f"if not ({cond}): break", s.pos)
        self.fn.indent -= 1
        self.block(s.body)
        self.fn.loops -= 1

    def loop_var(self, node: Node, value: str) -> str:
        binding = self.res.local(node)
        var = self.local_name(binding.decl)
        return f"{var} = _Cell({value})" if binding.captured else f"{var} = {value}"

    def for_range(self, s: ForRange) -> None:
        start = self.expr(s.start)
        fixed = self.temp()
        self.emit(f"{fixed} = {start}")
        end = self.expr(s.end)
        self.loop_enter(s.pos)
        k = self.temp()
        self.emit(f"for {k} in _range_iter({fixed}, {end}):", s.pos)
        self.loop_body(s.body, s.pos, [self.loop_var(s, f"{fixed} + {k}")])

    def for_each(self, s: ForEach) -> None:
        items = self.expr(s.iterable)
        self.loop_enter(s.pos)
        item = self.temp()
        self.emit(f"for {item} in _iterate({items}):", s.pos)
        self.loop_body(s.body, s.pos, [self.loop_var(s, item)])

    def server(self, s: ServerDecl) -> None:
        info = self.res.functions[s]
        self.begin(info, "server", f"server {s.name}")
        members = [h.fn for h in s.handlers] + [h.fn for h in s.helpers]
        for fn in members:  # cells first: members refer to each other
            binding = self.res.local(fn)
            if binding.captured:
                self.emit(f"{self.local_name(binding.decl)} = _Cell(None)")
        refs = []
        for fn in members:
            binding = self.res.local(fn)
            var = self.local_name(binding.decl)
            value = self.closure(fn)
            self.emit(f"{var}.v = {value}" if binding.captured else f"{var} = {value}", fn.pos)
            refs.append(f"{var}.v" if binding.captured else var)
        handlers = ", ".join(f"{h.fn.name!r}: {ref}" for h, ref in zip(s.handlers, refs))
        if s.key is None:
            state = self.expr(s.state) if s.state is not None else "{}"
        else:  # a family: the initial state is made for each of its servers, when it starts
            state = self.assign_temp(f"_Fn({self.family_state(s, info)}, ())", s.pos)
        self.emit(f"return {{{handlers}}}, {state}")
        pyname = self.fn.pyname
        self.finish()
        value = self.temp()
        declare = "_declare_server" if s.key is None else "_declare_family"
        self.emit(f"{value} = {declare}({s.name!r}, *{pyname}(()))", s.pos)
        self.bind_new(s, s.name, lambda: value)

    def family_state(self, s: ServerDecl, info: FunctionInfo) -> str:
        """The function that makes a family server's initial state; returns its FunctionCode's expression.

        It runs in the server's scope (its locals are the server's) but holds only the `state`
        literal, whose names the resolver bound before the server's members."""
        gen = self.begin(info, "server", f"state of {s.name}")  # its frames show in the Relay stack
        code = FunctionCode(s.name, s, 0, pyname=gen.pyname)
        self.inits.append(code)
        self.emit_return(self.expr(s.state) if s.state is not None else "{}", s.pos)
        self.finish()
        return self.const(code)

    # ------------------------------------------------------------ expressions

    def expr(self, e: Expr) -> str:
        return self.typed(e)[0]

    def typed(self, e: Expr) -> tuple[str, str | None]:
        """Emits code for e; returns (atom, static type or None)."""
        match e:
            case Num():
                return self.literal(e.value), NUM
            case Str():  # a long literal goes to the constants, not into the generated text
                return (repr(e.value) if len(e.value) <= INLINE_STRING else self.const(e.value)), STR
            case Bool():
                return ("True" if e.value else "False"), BOOL
            case Null():
                return "None", None
            case Name():
                return self.read_var(self.res.bindings[e], e.name, e.pos), None
            case Binary():
                return self.binary(e)
            case Logical():
                return self.logical(e), None
            case Unary():
                return self.unary(e)
            case Call():
                return self.call(e), self.call_kind(e)
            case MethodCall():
                return self.method_call(e), None
            case Index():
                obj = self.expr(e.obj)
                return self.index_read(obj, self.expr(e.index), e.pos), None
            case Field(obj=StateRef()):
                return self.assign_temp(f"_state_field({e.name!r})", e.pos), None
            case Field():
                return self.field_read(self.expr(e.obj), e.name, e.pos), None
            case ArrayLit():
                items = [self.expr(i) for i in e.items]
                return self.assign_temp(f"_pack({', '.join(items)})", e.pos), None
            case MapLit():
                values = [self.expr(v) for v in e.values]
                pairs = ", ".join(f"{k!r}: {v}" for k, v in zip(e.keys, values))
                return self.assign_temp(f"{{{pairs}}}", e.pos), None
            case Range():
                start = self.expr(e.start)
                end = self.expr(e.end)
                return self.assign_temp(f"_range_array({start}, {end})", e.pos), None
            case FnLit():
                return self.closure(e), None
            case IfExpr():
                return self.if_expr(e), None
            case StateRef():
                return self.assign_temp("_state()", e.pos), None
            case SelfRef():
                return self.assign_temp("_self()", e.pos), None
            case _:
                assert_never(e)

    def assign_temp(self, code: str, pos: Pos | None) -> str:
        t = self.temp()
        self.emit(f"{t} = {code}", pos)
        return t

    def closure(self, fn_node: FnLit) -> str:
        code = self.function(fn_node)
        info = self.res.functions[fn_node]
        cells = []
        for b in info.free:
            if isinstance(b, Local):
                cells.append(self.local_name(b.decl))
            else:
                cells.append(f"_c[{b.index}]")
        cell_tuple = "(" + "".join(c + ", " for c in cells) + ")"
        return self.assign_temp(f"_Fn({code}, {cell_tuple})", fn_node.pos)

    def binary(self, e: Binary) -> tuple[str, str | None]:
        left = self.typed(e.left)
        right = self.typed(e.right)
        op = e.op
        if op in ARITH_SLOW:
            return self.arith(op, left, right, e.pos)
        a, ta = left
        b, tb = right
        t = self.temp()
        checks = self.float_checks(left, right)
        if op in COMPARE:
            if checks:
                self.emit(f"if {checks}: {t} = {a} {op} {b}", e.pos)
                self.emit(f"else: {t} = _compare({op!r}, {a}, {b})", e.pos)
            else:
                self.emit(f"{t} = {a} {op} {b}", e.pos)
            return t, BOOL
        # == and !=
        negate = "not " if op == "!=" else ""
        if not checks:
            self.emit(f"{t} = {a} {op} {b}", e.pos)
        elif b == "None" or a == "None":
            other = self.subject(a if b == "None" else b)
            self.emit(f"{t} = {other} is {'not ' if negate else ''}None", e.pos)
        else:
            self.emit(f"if {checks}: {t} = {a} {op} {b}", e.pos)
            self.emit(f"else: {t} = {negate}_equal({a}, {b})", e.pos)
        return t, BOOL

    def float_checks(self, *operands: tuple[str, str | None]) -> str:
        return " and ".join(f"type({a}) is float" for a, kind in operands if kind != NUM)

    def arith(self, op: str, left: tuple[str, str | None], right: tuple[str, str | None],
              pos: Pos) -> tuple[str, str | None]:
        a, b = left[0], right[0]
        t = self.temp()
        checks = self.float_checks(left, right)
        slow = f"{ARITH_SLOW[op]}({a}, {b})"
        if op == "+" and STR in (left[1], right[1]):  # joining strings: short ones need no budget check
            strings = [f"type({x}) is str" for x, kind in (left, right) if kind != STR]
            self.emit(f"if {' and '.join(strings + [f'len({a}) + len({b}) <= {BIG_STRING}'])}: {t} = {a} + {b}", pos)
            self.emit(f"else: {t} = {slow}", pos)
            return t, STR
        if op in ("+", "-", "*"):
            fast = f"{a} {op} {b}"
        elif op == "/":
            fast = f"{a} / {b}"
            if not _nonzero_literal(b):  # Python raises on x / 0.0 where IEEE gives inf or nan
                checks = f"{checks} and {b}" if checks else b
        elif op == "%":
            fast = f"_fmod({a}, {b})"
        else:
            fast = f"_power({a}, {b})"
        if checks:
            self.emit(f"if {checks}: {t} = {fast}", pos)
            self.emit(f"else: {t} = {slow}", pos)
        else:
            self.emit(f"{t} = {fast}", pos)
        kind = NUM if (op != "+" or (left[1] == NUM and right[1] == NUM)) else None
        return t, kind

    def unary(self, e: Unary) -> tuple[str, str | None]:
        a, kind = self.typed(e.operand)
        t = self.temp()
        if e.op == "!":
            a = self.subject(a)
            self.emit(f"{t} = {a} is False or {a} is None", e.pos)
            return t, BOOL
        if kind == NUM:
            self.emit(f"{t} = -{a}", e.pos)
        else:
            self.emit(f"if type({a}) is float: {t} = -{a}", e.pos)
            self.emit(f"else: {t} = _neg({a})", e.pos)
        return t, NUM

    def logical(self, e: Logical) -> str:
        t = self.temp()
        self.emit(f"{t} = {self.expr(e.left)}", e.pos)
        if e.op == "&&":
            self.emit(f"if {t} is not False and {t} is not None:", e.pos)
        elif e.op == "||":
            self.emit(f"if {t} is False or {t} is None:", e.pos)
        else:  # ??
            self.emit(f"if {t} is None:", e.pos)
        self.fn.indent += 1
        self.emit(f"{t} = {self.expr(e.right)}", e.pos)
        self.fn.indent -= 1
        return t

    def index_read(self, obj: str, key: str, pos: Pos) -> str:
        t = self.temp()
        self.emit(f"if type({obj}) is _Array: {t} = {obj}[{key}]", pos)
        self.emit(f"else: {t} = _index({obj}, {key})", pos)
        return t

    def field_read(self, obj: str, name: str, pos: Pos) -> str:
        t = self.temp()
        self.emit(f"if type({obj}) is dict: {t} = {obj}.get({name!r})", pos)
        self.emit(f"else: {t} = _field({obj}, {name!r})", pos)
        return t

    def arguments(self, args: tuple[Expr, ...]) -> list[str]:
        return [self.expr(a) for a in args]

    def call(self, e: Call) -> str:
        callee = e.callee
        if self.is_builtin(callee):
            return self.builtin_call(callee.name, e)
        f = self.expr(callee)
        args = self.arguments(e.args)
        t = self.temp()
        joined = ", ".join(args)
        self.emit(f"if type({f}) is _Fn and {f}.n == {len(args)}: {t} = {f}.py({f}.c{''.join(', ' + a for a in args)})", e.pos)
        self.emit(f"else: {t} = _call({f}, ({joined}{',' if len(args) == 1 else ''}))", e.pos)
        return t

    def is_builtin(self, callee: Expr) -> TypeGuard[Name]:
        return isinstance(callee, Name) and isinstance(self.res.bindings[callee], Global) and callee.name in BUILTIN_NAMES

    def call_kind(self, e: Call) -> str | None:
        """The static type of a call's value: known for the builtins that make strings."""
        return STR if self.is_builtin(e.callee) and e.callee.name in STRING_BUILTINS else None

    def builtin_call(self, name: str, e: Call) -> str:
        args = self.arguments(e.args)
        t = self.temp()
        joined = ", ".join(args)
        if name == "len" and len(args) == 1:
            a = args[0]
            self.emit(f"if type({a}) is _Array: {t} = float(len({a}))", e.pos)
            self.emit(f"else: {t} = _B_len({a})", e.pos)
        elif name == "push" and len(args) == 2:
            a, v = args
            self.emit(f"if type({a}) is _Array: {t} = {a}.push({v})", e.pos)
            self.emit(f"else: {t} = _B_push({a}, {v})", e.pos)
        else:
            self.emit(f"{t} = _call_builtin({name!r}, ({joined}{',' if len(args) == 1 else ''}))"
                      if not self.arity_ok(name, len(args)) else f"{t} = _B_{name}({joined})", e.pos)
        return t

    def arity_ok(self, name: str, n: int) -> bool:
        lo, hi = BUILTIN_ARITY[name]
        return lo <= n and (hi is None or n <= hi)

    def method_call(self, e: MethodCall) -> str:
        obj = self.expr(e.obj)
        args = self.arguments(e.args)
        t = self.temp()
        if e.name == "push" and len(args) == 1:
            self.emit(f"if type({obj}) is _Array: {t} = {obj}.push({args[0]})", e.pos)
            self.emit(f"else: {t} = _method({obj}, 'push', ({args[0]},))", e.pos)
        else:
            joined = "".join(a + ", " for a in args)
            self.emit(f"{t} = _method({obj}, {e.name!r}, ({joined}))", e.pos)
        return t


def _nonzero_literal(atom: str) -> bool:
    try:
        return float(atom) != 0.0
    except ValueError:
        return False  # a temporary, a local or a constant-table entry


def generate(program: Program, res: Resolution, unit_id: int, file: str) -> Unit:
    return CodeGen(res, unit_id, file).program(program)

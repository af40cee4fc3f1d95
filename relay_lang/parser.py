"""Parser: tokens to AST, by recursive descent with one function per precedence level."""

from __future__ import annotations

from .budget import FRONT_END_CHECK, checkpoint_at
from .errors import Pos, RelaySyntaxError
from .lexer import Token, tokenize
from .nodes import (
    ArrayLit,
    Assign,
    Binary,
    Block,
    Bool,
    Break,
    Call,
    Continue,
    Directive,
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
    Null,
    Num,
    Param,
    Program,
    Range,
    Receive,
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

TYPE_NAMES = ("number", "string", "bool", "null", "array", "map", "fn", "server", "any", "function", "object")
DIRECTIVES = ("llvm", "interpret", "optimize", "fastmath", "gpu")
ASSIGN_OPS = ("=", "+=", "-=", "*=", "/=", "%=")
MAX_NESTING = 100  # brackets, blocks and unary operators, all together
MAX_BLOCK_NESTING = 40  # blocks inside blocks

# Binary operators by precedence, lowest first; `..` makes Range nodes.
PRECEDENCE: dict[str, int] = {
    "||": 1, "??": 2, "&&": 3, "==": 4, "!=": 4, "<": 5, "<=": 5, ">": 5, ">=": 5,
    "..": 6, "+": 7, "-": 7, "*": 8, "/": 8, "%": 8,
}
LOGICAL = ("||", "??", "&&")


class Parser:
    def __init__(self, tokens: list[Token], file: str) -> None:
        self.tokens = tokens
        self.file = file
        self.k = 0
        self.depth = 0
        self.blocks = 0

    # ------------------------------------------------------------ token helpers

    @property
    def tok(self) -> Token:
        return self.tokens[self.k]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.k + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.k]
        if tok.kind != "eof":
            self.k += 1
            if not self.k % FRONT_END_CHECK:
                checkpoint_at(tok.pos)
        return tok

    def at_op(self, *ops: str) -> bool:
        tok = self.tok
        return tok.kind == "op" and tok.text in ops

    def at_kw(self, *words: str) -> bool:
        tok = self.tok
        return tok.kind == "kw" and tok.text in words

    def error(self, message: str, tok: Token | None = None) -> RelaySyntaxError:
        return RelaySyntaxError(message, (tok or self.tok).pos)

    def expect_op(self, op: str, context: str) -> Token:
        if not self.at_op(op):
            raise self.error(f"expected '{op}' {context}, found {self.tok.describe()}")
        return self.advance()

    def expect_kw(self, word: str, context: str) -> Token:
        if not self.at_kw(word):
            raise self.error(f"expected '{word}' {context}, found {self.tok.describe()}")
        return self.advance()

    def expect_ident(self, context: str) -> Token:
        if self.tok.kind != "ident":
            found = self.tok.describe()
            if self.tok.kind == "kw":
                found = f"keyword '{self.tok.text}'"
            raise self.error(f"expected {context}, found {found}")
        return self.advance()

    def skip_newlines(self) -> None:
        while self.tok.kind == "newline":
            self.k += 1

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"program nested too deeply (more than {MAX_NESTING} levels)")

    # ------------------------------------------------------------ statements

    def program(self) -> Program:
        stmts = self.statements(until_brace=False)
        return Program(Pos(self.file, 1, 1), tuple(stmts))

    def statements(self, until_brace: bool) -> list[Stmt]:
        stmts: list[Stmt] = []
        while True:
            while self.tok.kind == "newline" or self.at_op(";"):
                self.advance()
            if self.tok.kind == "eof":
                if until_brace:
                    raise self.error("expected '}' to close the block, found end of file")
                return stmts
            if until_brace and self.at_op("}"):
                return stmts
            stmts.append(self.statement())
            self.end_of_statement()

    def end_of_statement(self) -> None:
        """A statement ends at a newline, ';', '}' or end of file, or right after a '}'."""
        if self.tok.kind in ("newline", "eof") or self.at_op(";", "}"):
            return
        if self.tokens[self.k - 1].kind == "op" and self.tokens[self.k - 1].text == "}":
            return
        raise self.error(f"expected end of statement (newline or ';'), found {self.tok.describe()}")

    def block(self, context: str) -> Block:
        self.skip_newlines()
        start = self.expect_op("{", context)
        self.nest()
        self.blocks += 1
        if self.blocks > MAX_BLOCK_NESTING:
            raise self.error(f"blocks nested too deeply (more than {MAX_BLOCK_NESTING} levels)", start)
        stmts = self.statements(until_brace=True)
        self.blocks -= 1
        self.depth -= 1
        self.expect_op("}", "to close the block")
        return Block(start.pos, tuple(stmts))

    def statement(self) -> Stmt:
        tok = self.tok
        if tok.kind == "op" and tok.text == "@":
            directives = self.directives()
            if not (self.at_kw("fn") and self.peek().kind == "ident"):
                raise self.error(f"a directive must be followed by a function declaration, found {self.tok.describe()}")
            return self.fn_decl(directives)
        if tok.kind == "kw":
            word = tok.text
            if word == "fn" and self.peek().kind == "ident":
                return self.fn_decl(())
            if word in ("let", "set"):
                return self.let_stmt()
            if word == "if":
                return self.if_stmt()
            if word == "while":
                self.advance()
                cond = self.expression()
                return While(tok.pos, cond, self.block("after the while condition"))
            if word == "for":
                return self.for_stmt()
            if word == "break":
                return Break(self.advance().pos)
            if word == "continue":
                return Continue(self.advance().pos)
            if word == "return":
                self.advance()
                if self.tok.kind in ("newline", "eof") or self.at_op(";", "}"):
                    return Return(tok.pos, None)
                return Return(tok.pos, self.expression())
            if word == "server":
                return self.server_decl()
            if word == "receive":
                raise self.error("'receive fn' handlers are only allowed inside a server")
        expr = self.expression()
        if self.at_op(*ASSIGN_OPS):
            op = self.advance()
            if not isinstance(expr, (Name, Index, Field)):
                what = "state" if isinstance(expr, StateRef) else "this expression"
                raise self.error(f"cannot assign to {what}; assign to a variable, an element a[i] or a field m.k", op)
            self.skip_newlines()
            return Assign(op.pos, expr, op.text, self.expression())
        return ExprStmt(expr.pos, expr)

    def let_stmt(self) -> Let:
        tok = self.advance()
        name = self.expect_ident(f"a variable name after '{tok.text}'")
        self.skip_newlines()
        self.expect_op("=", f"after 'let {name.text}'")
        self.skip_newlines()
        return Let(tok.pos, name.text, self.expression(), tok.text == "set")

    def if_stmt(self) -> If:
        tok = self.advance()
        cond = self.expression()
        then = self.block("after the if condition")
        orelse: Block | If | None = None
        save = self.k
        self.skip_newlines()
        if self.at_kw("else"):
            self.advance()
            if self.at_kw("if"):  # a chain of `else if`, not nesting: not counted against MAX_NESTING
                orelse = self.if_stmt()
            else:
                orelse = self.block("after 'else'")
        else:
            self.k = save
        return If(tok.pos, cond, then, orelse)

    def for_stmt(self) -> Stmt:
        tok = self.advance()
        var = self.expect_ident("a loop variable name after 'for'")
        self.expect_kw("in", f"after 'for {var.text}'")
        iterable = self.expression()
        body = self.block("after the for header")
        if isinstance(iterable, Range):
            return ForRange(tok.pos, var.text, iterable.start, iterable.end, body)
        return ForEach(tok.pos, var.text, iterable, body)

    def directives(self) -> tuple[Directive, ...]:
        found: list[Directive] = []
        while self.at_op("@"):
            at = self.advance()
            name = self.tok
            if name.kind not in ("ident", "kw") or name.text not in DIRECTIVES:
                raise self.error(f"unknown directive '@{name.text}' "
                                 "(known: @llvm, @gpu, @interpret, @optimize(0..3), @fastmath)", name)
            self.advance()
            args: list[float] = []
            if self.at_op("("):
                self.advance()
                while not self.at_op(")"):
                    arg = self.tok
                    if arg.kind != "num":
                        raise self.error(f"directive arguments are numbers, found {arg.describe()}")
                    args.append(self.advance().value)  # type: ignore[arg-type]
                    if not self.at_op(")"):
                        self.expect_op(",", "between directive arguments")
                self.advance()
            directive = Directive(at.pos, name.text, tuple(args))
            self.check_directive(directive, found)
            found.append(directive)
            self.skip_newlines()
        return tuple(found)

    def check_directive(self, d: Directive, earlier: list[Directive]) -> None:
        if d.name == "optimize":
            if len(d.args) != 1 or d.args[0] not in (0, 1, 2, 3):
                raise RelaySyntaxError("@optimize takes one level: 0, 1, 2 or 3", d.pos)
        elif d.args:
            raise RelaySyntaxError(f"@{d.name} takes no arguments", d.pos)
        names = {e.name for e in earlier}
        if d.name in names:
            raise RelaySyntaxError(f"@{d.name} given twice", d.pos)
        if {d.name} | names >= {"llvm", "interpret"}:
            raise RelaySyntaxError("@llvm and @interpret contradict each other", d.pos)
        for other in ("interpret", "fastmath"):  # @gpu code runs without fast-math, compiled
            if {d.name} | names >= {"gpu", other}:
                raise RelaySyntaxError(f"@gpu and @{other} contradict each other", d.pos)

    def fn_decl(self, directives: tuple[Directive, ...]) -> FnDecl:
        tok = self.expect_kw("fn", "")
        name = self.expect_ident("a function name after 'fn'")
        return FnDecl(tok.pos, self.fn_rest(tok, name.text, directives))

    def fn_rest(self, tok: Token, name: str, directives: tuple[Directive, ...]) -> FnLit:
        """Parameters, optional return type and body, after `fn` (and the name)."""
        self.expect_op("(", f"to start the parameters of {name or 'the function'}")
        params: list[Param] = []
        seen: set[str] = set()
        while not self.at_op(")"):
            p = self.expect_ident("a parameter name")
            if p.text in seen:
                raise self.error(f"parameter '{p.text}' appears twice", p)
            seen.add(p.text)
            ann = None
            if self.at_op(":"):
                self.advance()
                ann = self.type_ann()
            params.append(Param(p.pos, p.text, ann))
            if not self.at_op(")"):
                self.expect_op(",", "between parameters")
        self.advance()
        ret = None
        if self.at_op("->"):
            self.advance()
            ret = self.type_ann()
        body = self.block(f"to start the body of {name or 'the function'}")
        return FnLit(tok.pos, name, tuple(params), ret, body, directives)

    def type_ann(self) -> TypeAnn:
        tok = self.tok
        if self.at_op("["):  # Relay 0.3's `[T]`: an array (of numbers: array<number>)
            self.advance()
            self.nest()
            elem = self.type_ann()
            self.depth -= 1
            self.expect_op("]", "to close the array type")
            return TypeAnn(tok.pos, "array", "number" if elem.name == "number" else None)
        if tok.kind not in ("ident", "kw") or tok.text not in TYPE_NAMES:
            raise self.error(f"expected a type ({', '.join(TYPE_NAMES)}), found {tok.describe()}")
        self.advance()
        if tok.text == "array" and self.at_op("<"):
            self.advance()
            elem_tok = self.tok
            if elem_tok.text != "number":
                raise self.error("only array<number> is supported as an element type", elem_tok)
            self.advance()
            self.expect_op(">", "to close array<number")
            return TypeAnn(tok.pos, "array", "number")
        return TypeAnn(tok.pos, tok.text)

    def server_decl(self) -> ServerDecl:
        tok = self.advance()
        name = self.expect_ident("a server name after 'server'")
        key = None
        if self.at_op("["):  # a family: `server account[id] { ... }`
            self.advance()
            word = self.tok
            if word.text != "id" or word.kind not in ("ident", "kw"):
                raise self.error(f"a family's key is self.id: declare it as server {name.text}[id] {{ ... }}, "
                                 f"found {word.describe()}")
            self.advance()
            self.expect_op("]", f"after server {name.text}[id")
            key = "id"
        self.skip_newlines()
        self.expect_op("{", f"to start the body of server {name.text}")
        state: MapLit | None = None
        handlers: list[Receive] = []
        helpers: list[FnDecl] = []
        names: set[str] = set()
        while True:
            while self.tok.kind == "newline" or self.at_op(";"):
                self.advance()
            if self.at_op("}"):
                self.advance()
                break
            directives = self.directives() if self.at_op("@") else ()
            member = self.tok
            if self.at_kw("state") and not directives:
                if state is not None:
                    raise self.error(f"server {name.text} declares its state twice")
                self.advance()
                self.skip_newlines()
                if not self.at_op("{"):
                    raise self.error("expected '{' after 'state' (the initial state is a map literal)")
                state = self.map_literal(typed=True)
                continue
            if self.at_kw("receive"):
                self.advance()
                fn_tok = self.expect_kw("fn", "after 'receive'")
                fname = self.expect_ident("a handler name after 'receive fn'")
                decl = self.fn_rest(fn_tok, fname.text, directives)
                handlers.append(Receive(member.pos, decl))
            elif self.at_kw("fn"):
                helpers.append(self.fn_decl(directives))
                decl = helpers[-1].fn
            else:
                raise self.error(
                    f"a server body holds 'state {{...}}', 'receive fn' handlers and 'fn' helpers, found {self.tok.describe()}")
            if decl.name in names:
                raise RelaySyntaxError(f"server {name.text} defines '{decl.name}' twice", member.pos)
            names.add(decl.name)
        return ServerDecl(tok.pos, name.text, state, tuple(handlers), tuple(helpers), key)

    # ------------------------------------------------------------ expressions

    def expression(self) -> Expr:
        self.nest()
        expr = self.binary(1)
        self.depth -= 1
        return expr

    def binary(self, min_prec: int) -> Expr:
        """Precedence climbing: operators at or above min_prec, left associative."""
        left = self.unary()
        while self.tok.kind == "op" and PRECEDENCE.get(self.tok.text, 0) >= min_prec:
            op = self.advance()
            self.skip_newlines()
            right = self.binary(PRECEDENCE[op.text] + 1)
            if op.text == "..":
                left = Range(op.pos, left, right)
            elif op.text in LOGICAL:
                left = Logical(op.pos, op.text, left, right)
            else:
                left = Binary(op.pos, op.text, left, right)
        return left

    def unary(self) -> Expr:
        if self.at_op("-", "!"):
            op = self.advance()
            self.nest()
            operand = self.unary()
            self.depth -= 1
            return Unary(op.pos, op.text, operand)
        return self.power()

    def power(self) -> Expr:
        base = self.postfix()
        if self.at_op("**"):
            op = self.advance()
            self.skip_newlines()
            self.nest()
            exponent = self.unary()  # right associative; `2 ** -1` allowed
            self.depth -= 1
            return Binary(op.pos, "**", base, exponent)
        return base

    def postfix(self) -> Expr:
        expr = self.primary()
        while True:
            if self.at_op("("):
                expr = Call(expr.pos, expr, self.arguments())
            elif self.at_op("["):
                bracket = self.advance()
                index = self.expression()
                self.expect_op("]", "to close the index")
                expr = Index(bracket.pos, expr, index)
            elif self.at_op("."):
                self.advance()
                name = self.tok
                if name.kind not in ("ident", "kw"):
                    raise self.error(f"expected a field name after '.', found {name.describe()}")
                self.advance()
                if self.at_op("("):
                    expr = MethodCall(name.pos, expr, name.text, self.arguments())
                else:
                    expr = Field(name.pos, expr, name.text)
            else:
                return expr

    def arguments(self) -> tuple[Expr, ...]:
        self.expect_op("(", "")
        args: list[Expr] = []
        while not self.at_op(")"):
            args.append(self.expression())
            if not self.at_op(")"):
                self.expect_op(",", "between arguments")
        self.advance()
        return tuple(args)

    def primary(self) -> Expr:
        tok = self.tok
        kind = tok.kind
        if kind == "num":
            self.advance()
            return Num(tok.pos, tok.value)  # type: ignore[arg-type]
        if kind == "str":
            self.advance()
            return Str(tok.pos, tok.value)  # type: ignore[arg-type]
        if kind == "ident":
            self.advance()
            return Name(tok.pos, tok.text)
        if kind == "kw":
            word = tok.text
            if word in ("true", "false"):
                self.advance()
                return Bool(tok.pos, word == "true")
            if word in ("null", "nil"):
                self.advance()
                return Null(tok.pos)
            if word == "state":
                self.advance()
                return StateRef(tok.pos)
            if word == "self":
                self.advance()
                return SelfRef(tok.pos)
            if word == "send":
                self.advance()
                if self.tok.kind == "str":
                    return self.send_form(tok)
                return Name(tok.pos, "send")
            if word == "if":
                return IfExpr(tok.pos, self.if_stmt())
            if word == "fn":
                self.advance()
                return self.fn_rest(tok, "", ())
        if kind == "op":
            if tok.text == "(":
                self.advance()
                expr = self.expression()
                self.expect_op(")", "to close the parenthesis")
                return expr
            if tok.text == "[":
                self.advance()
                items: list[Expr] = []
                while not self.at_op("]"):
                    items.append(self.expression())
                    if not self.at_op("]"):
                        self.expect_op(",", "between array elements")
                self.advance()
                return ArrayLit(tok.pos, tuple(items))
            if tok.text == "{":
                return self.map_literal()
            name = self.peek()
            if tok.text == ":" and name.kind in ("ident", "kw") and name.pos.line == tok.pos.line \
                    and name.pos.col == tok.pos.col + 1:  # a Relay 0.3 symbol, `:hello`: the string "hello"
                self.advance()
                self.advance()
                return Str(tok.pos, name.text)
        raise self.error(f"expected an expression, found {tok.describe()}")

    def send_form(self, send: Token) -> Call:
        """Relay 0.3's `send "name" handler { k: v }`: `send("name", "handler", {k: v})`."""
        server = self.advance()
        handler = self.expect_ident(f"a handler name after 'send {server.text}'")
        if not self.at_op("{"):
            raise self.error(f"expected '{{' to start the arguments object of 'send {server.text} {handler.text}'")
        args = (Str(server.pos, server.value), Str(handler.pos, handler.text), self.map_literal())  # type: ignore[arg-type]
        return Call(send.pos, Name(send.pos, "send"), args)

    def map_literal(self, typed: bool = False) -> MapLit:
        """`{k: v, ...}`; with typed (a server's state), Relay 0.3's `k: type = v` fields too."""
        start = self.expect_op("{", "")
        keys: list[str] = []
        seen: set[str] = set()
        values: list[Expr] = []
        while True:
            self.skip_newlines()
            if self.at_op("}"):
                self.advance()
                return MapLit(start.pos, tuple(keys), tuple(values))
            key = self.tok
            if key.kind in ("ident", "kw"):
                text = key.text
            elif key.kind == "str":
                text = key.value  # type: ignore[assignment]
            else:
                raise self.error(f"expected a map key (a name or a string), found {key.describe()}")
            if text in seen:
                raise self.error(f"duplicate key {text!r} in map literal", key)
            seen.add(text)
            self.advance()
            self.skip_newlines()
            self.expect_op(":", "after the map key")
            self.skip_newlines()
            if typed and self.at_field_type():
                self.type_ann()  # documentation: the field's type is not checked
                self.advance()
                self.skip_newlines()
            keys.append(text)
            values.append(self.expression())
            self.skip_newlines()
            if not self.at_op("}"):
                self.expect_op(",", "between map entries")


    def at_field_type(self) -> bool:
        """At `T =`, `[T] =`, `[[T]] =`... (Relay 0.3's typed state field), not at a value."""
        k = 0
        while self.peek(k).kind == "op" and self.peek(k).text == "[":
            k += 1
        t = self.peek(k)
        if t.kind not in ("ident", "kw") or t.text not in TYPE_NAMES:
            return False
        after = [(a.kind, a.text) for a in (self.peek(k + 1 + i) for i in range(k + 1))]
        return after == [("op", "]")] * k + [("op", "=")]


def parse(source: str, file: str = "<input>") -> Program:
    """Parse a whole program; raises RelaySyntaxError with the position of the first error."""
    return Parser(tokenize(source, file), file).program()

from __future__ import annotations

import pytest

from relay_lang.errors import RelaySyntaxError
from relay_lang.hashing import node_hash
from relay_lang.nodes import Binary, ExprStmt, FnDecl, ForRange, If, Let, Logical, Unary
from relay_lang.parser import parse


def expr(src: str):
    stmt = parse(src).stmts[0]
    assert isinstance(stmt, ExprStmt)
    return stmt.expr


def shape(e) -> object:
    if isinstance(e, (Binary, Logical)):
        return (e.op, shape(e.left), shape(e.right))
    if isinstance(e, Unary):
        return (e.op, shape(e.operand))
    return getattr(e, "value", getattr(e, "name", None))


@pytest.mark.parametrize("src,expected", [
    ("2 + 3 * 4", ("+", 2.0, ("*", 3.0, 4.0))),
    ("2 ** 3 ** 2", ("**", 2.0, ("**", 3.0, 2.0))),
    ("-2 ** 2", ("-", ("**", 2.0, 2.0))),
    ("2 ** -1", ("**", 2.0, ("-", 1.0))),
    ("a || b ?? c && d", ("||", "a", ("??", "b", ("&&", "c", "d")))),
    ("a == b < c", ("==", "a", ("<", "b", "c"))),
    ("1 -\n 2", ("-", 1.0, 2.0)),
])
def test_precedence(src: str, expected: object) -> None:
    assert shape(expr(src)) == expected


def test_statements_without_separator_after_blocks() -> None:
    prog = parse("fn sq(x) { x * x } sq(12)")
    assert isinstance(prog.stmts[0], FnDecl) and isinstance(prog.stmts[1], ExprStmt)


def test_else_on_next_line_and_for_range() -> None:
    prog = parse("if a {\n} \nelse if b { }\nelse { }\nfor i in 0..n { }")
    assert isinstance(prog.stmts[0], If) and isinstance(prog.stmts[0].orelse, If)
    assert isinstance(prog.stmts[1], ForRange)


def test_directives_and_annotations() -> None:
    fn = parse("@llvm\n@optimize(3)\nfn f(a: array<number>, b) -> number { a }").stmts[0].fn
    assert [d.name for d in fn.directives] == ["llvm", "optimize"]
    assert str(fn.params[0].type) == "array<number>" and fn.params[1].type is None
    assert str(fn.ret_type) == "number"


def test_server_declaration() -> None:
    s = parse("server c {\n state { n: 0 }\n receive fn get() { state.n }\n fn helper() { 1 }\n}").stmts[0]
    assert s.name == "c" and [h.fn.name for h in s.handlers] == ["get"] and len(s.helpers) == 1


def test_server_family_declaration() -> None:
    family = parse("server account[id] {\n state { b: self.id }\n receive fn get() { state.b }\n}").stmts[0]
    plain = parse("server c { }").stmts[0]
    assert (family.name, family.key, plain.key) == ("account", "id", None)
    assert node_hash(family) != node_hash(parse("server account {\n state { b: self.id }\n receive fn get() { state.b }\n}").stmts[0])


def test_compat_set() -> None:
    stmt = parse("set x = 1").stmts[0]
    assert isinstance(stmt, Let) and stmt.redeclare


@pytest.mark.parametrize("src,message,line,col", [
    ("fn broken(a, {\nlet x = 1", "expected a parameter name, found '{'", 1, 14),
    ("let = 3", "expected a variable name", 1, 5),
    ("x = 1 2", "expected end of statement", 1, 7),
    ("f(1,", "expected an expression, found end of file", 1, 5),
    ("if x { ", "expected '}'", 1, 8),
    ("@fast\nfn f() {}", "unknown directive '@fast'", 1, 2),
    ("@optimize(7)\nfn f() {}", "@optimize takes one level", 1, 1),
    ("@llvm\nlet x = 1", "must be followed by a function declaration", 2, 1),
    ("fn f(a: strin) {}", "expected a type", 1, 9),
    ("{a: 1, a: 2}", "duplicate key", 1, 8),
    ("1 + 2 = 3", "cannot assign", 1, 7),
    ("receive fn x() {}", "only allowed inside a server", 1, 1),
    ("server s { let x = 1 }", "a server body holds", 1, 12),
    ("server s[key] { }", "a family's key is self.id: declare it as server s[id]", 1, 10),
    ("server s[] { }", "a family's key is self.id", 1, 10),
    ("server s[id { }", "expected ']' after server s[id", 1, 13),
])
def test_syntax_errors(src: str, message: str, line: int, col: int) -> None:
    with pytest.raises(RelaySyntaxError) as info:
        parse(src, "p.relay")
    assert message in info.value.message
    assert (info.value.pos.line, info.value.pos.col) == (line, col)


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(RelaySyntaxError, match="nested too deeply"):
        parse("(" * 5000 + "1" + ")" * 5000)


def test_hash_ignores_layout_and_comments_but_not_code() -> None:
    a = parse("fn f(x) { return x + 1 }").stmts[0]
    b = parse("fn f(x)   {\n  // comment\n  return x+1\n}").stmts[0]
    c = parse("fn f(x) { return x + 2 }").stmts[0]
    assert node_hash(a) == node_hash(b) != node_hash(c)
    assert len(node_hash(a)) == 64

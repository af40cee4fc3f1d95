"""Semantics of the interpreter tier, one behaviour per test."""

from __future__ import annotations

import pytest

from conftest import run_relay
from relay_lang.errors import RelayError


def out(src: str, **kw) -> str:
    return run_relay(src, **kw)[0]


def value(src: str):
    return run_relay(src)[1]


def error(src: str, **kw) -> RelayError:
    with pytest.raises(RelayError) as info:
        run_relay(src, **kw)
    return info.value


# ---------------------------------------------------------------- values and operators

def test_numbers_are_floats_and_print_per_spec() -> None:
    assert out("print(8, -3, 9007199254740992, 0.1, 2.5e-7, 1e21, 1e16, 1/0, -1/0, 0/0, -0)") == \
        "8 -3 9007199254740992 0.1 2.5e-07 1e+21 1e+16 inf -inf nan -0\n"


def test_ieee_edge_cases_never_raise() -> None:
    src = "print(0 ** -1, (-8) ** (1/3), 2 ** 10000, (-2) ** 10001, sqrt(-1), log(0), log(-1), exp(1000), " \
          "floor(0/0), 5 % 0, -7 % 3, 7 % -3, min(1, 0/0), max(0/0, 1), ceil(-0.5), round(-0.4))"
    assert out(src) == "inf nan inf -inf nan -inf nan inf nan nan -1 1 nan nan -0 -0\n"


def test_division_by_computed_zero_is_ieee() -> None:
    assert out("let x = 5\nx /= (0 / 1)\nprint(x, 1 / (2 - 2), -1 / (2 - 2), 0 / (1 - 1), 7 % (1 - 1))") == "inf inf -inf nan nan\n"


def test_round_halves_away_from_zero() -> None:
    assert out("print(round(2.5), round(-2.5), round(0.49999999999999994), round(1.5), round(-0.5))") == \
        "3 -3 0 2 -1\n"


def test_truthiness() -> None:
    assert out('for v in [0, "", [], {}, false, null] { print(v && "t" || "f") }') == "t\nt\nt\nt\nf\nf\n"


def test_logical_operators_return_deciding_operand_and_short_circuit() -> None:
    assert out('fn boom() { error("no") }\nprint(false && boom(), 1 || boom(), null ?? 2, false ?? 2)') == \
        "false 1 2 false\n"


def test_equality_is_typed_and_deep() -> None:
    assert out('print(1 == true, 0 == false, null == false, "1" == 1, [1, [2]] == [1, [2]], {a: 1, b: 2} == {b: 2, a: 1})') == \
        "false false false false true true\n"
    assert out("let f = fn() {}\nlet g = f\nprint(f == g, f == fn() {})") == "true false\n"


def test_cyclic_values_print_and_compare() -> None:
    assert out("let a = [1]\na.push(a)\nprint(a, a == a)") == "[1, [...]] true\n"


@pytest.mark.parametrize("src,message", [
    ('"a" + 1', "cannot add string and number"),
    ("true + 1", "cannot add bool and number"),
    ('"a" * 2', "cannot multiply string and number"),
    ("1 < \"a\"", "cannot compare number < string"),
    ("-\"x\"", "cannot negate string"),
    ("[1] < [2]", "cannot compare array < array"),
])
def test_operator_type_errors(src: str, message: str) -> None:
    assert message in error(src).message


def test_strings() -> None:
    assert out('print(len("héllo"), "abc"[1], "a" < "b", split("a,b", ","), join([1, "x", null], "-"), slice("hello", 1, 3))') == \
        '5 b true ["a", "b"] 1-x-null el\n'
    assert out('print(str([1, "a\\n"]), {"k-1": 1, ok: "v"})') == '[1, "a\\n"] {"k-1": 1, ok: "v"}\n'


def test_num_parses_relay_number_syntax_or_gives_null() -> None:
    assert out('print(num("42"), num("-2.5"), num("0x10"), num("1_000"), num("inf"), num("x1"), num(""))') == \
        "42 -2.5 16 1000 inf null null\n"


def test_ranges() -> None:
    assert out("print(0..4, 2..2, 0.5..3)\nfor i in 3..1 { print(i) }") == "[0, 1, 2, 3] [] [0.5, 1.5, 2.5]\n"


# ---------------------------------------------------------------- variables and scope

def test_closures_capture_by_reference() -> None:
    assert out("let x = 1\nlet f = fn() { x }\nx = 2\nprint(f())") == "2\n"
    assert out("fn mk() { let n = 0\n return [fn() { n += 1; n }, fn() { n }] }\n"
               "let p = mk()\np[0](); p[0]()\nprint(p[1]())") == "2\n"


def test_each_loop_iteration_has_fresh_bindings() -> None:
    assert out("let fs = []\nfor i in 0..3 { let j = i * 10\n fs.push(fn() { i + j }) }\n"
               "print(fs[0](), fs[2]())") == "0 22\n"


def test_block_scope_and_shadowing() -> None:
    assert out("let x = 1\nif true { let x = 2\n print(x) }\nprint(x)") == "2\n1\n"


def test_redeclaration_in_same_block_is_an_error_but_set_allows_it() -> None:
    assert "already declared" in error("let x = 1\nlet x = 2").message
    assert "already declared" in error("fn f() { let y = 1\n let y = 2 }").message
    assert out("set x = 1\nset x = 2\nprint(x)") == "2\n"


def test_undefined_names() -> None:
    e = error("let x = 1\ny = x + 1")
    assert "undefined variable 'y'" in e.message and (e.pos.line, e.pos.col) == (2, 1)
    assert "undefined variable 'z'" in error("print(z)").message


def test_functions_may_call_functions_declared_later() -> None:
    assert out("fn a() { b() }\nfn b() { 7 }\nprint(a())") == "7\n"


def test_let_bound_function_literal_can_recurse() -> None:
    assert out("fn outer() { let f = fn(n) { if n == 0 { 0 } else { 1 + f(n - 1) } }\n return f(5) }\nprint(outer())") == "5\n"


def test_builtins_cannot_be_redeclared_at_top_level_or_assigned() -> None:
    assert "builtin" in error("let print = 1").message
    assert "cannot assign to builtin" in error("len = 2").message
    assert out("fn f(len) { len }\nprint(f(3))") == "3\n"


def test_static_errors() -> None:
    assert "'break' outside of a loop" in error("break").message
    assert "outside of a loop" in error("while true { fn f() { continue } }").message
    assert "only available inside a server" in error("print(state)").message


# ---------------------------------------------------------------- functions

def test_block_values() -> None:
    assert out("fn a() { 1 }\nfn b(x) { if x { 1 } else { 2 } }\nfn c() { let y = 1 }\nfn d(x) { if x { 5 } }\n"
               "print(a(), b(false), c(), d(true), d(false))") == "1 2 null 5 null\n"


def test_program_value_is_its_last_expression() -> None:
    assert value("let x = 2\nx * 21") == 42.0
    assert value("let x = 2") is None


def test_argument_count_and_annotations() -> None:
    e = error("fn f(a, b) { a }\nf(1)")
    assert e.message == "f expects 2 arguments, got 1"
    e = error("fn f(s: string, a: array<number>) { s }\nf(\"x\", [1, \"2\"])")
    assert "f: parameter 'a' expects array<number>, got array with a string element" in e.message
    assert e.pos.line == 2
    assert "must return number" in error('fn f() -> number { "x" }\nf()').message
    assert out("fn f(x: any, g: fn, m: map) { type(x) }\nprint(f(1, print, {}))") == "number\n"


def test_calling_non_functions() -> None:
    assert "cannot call number" in error("let x = 1\nx()").message
    assert "len expects 1 argument, got 2" in error("len(1, 2)").message


def test_error_positions_and_stack() -> None:
    e = error("fn inner() {\n  error(\"deep\")\n}\nfn outer() { inner() }\nouter()")
    assert e.message == "deep" and (e.pos.line, e.pos.col) == (2, 3)
    assert [(name, p.line) for name, p, _ in e.stack] == [("inner", 4), ("outer", 5)]
    text = str(e)
    assert text.startswith("test.relay:2:3: error: deep") and "in inner, called at test.relay:4:14" in text


# ---------------------------------------------------------------- arrays and maps

def test_arrays() -> None:
    assert out("let a = [1]\nprint(a.push(2), push(a, 3), a.pop(), a, array(2, 0), slice([1, 2, 3], 1))") == \
        "2 3 3 [1, 2] [0, 0] [2, 3]\n"
    assert "index 1.5 out of range" in error("[1, 2][1.5]").message
    assert "index -1 out of range for array of length 2" in error("let a = [1, 2]\na[-1] = 0").message
    assert "array index must be a number, got string" in error('[1]["0"]').message
    assert "pop: the array is empty" in error("[].pop()").message


def test_maps() -> None:
    assert out('let m = {a: 1}\nm.b = 2\nm["c"] = 3\nm.a += 10\nprint(m, m.zz, keys(m), has(m, "b"))\n'
               'print(del(m, "b"), m)') == '{a: 11, b: 2, c: 3} null ["a", "b", "c"] true\n2 {a: 11, c: 3}\n'
    assert "map keys are strings" in error("let m = {}\nm[1] = 2").message
    assert "cannot read field 'x' of number" in error("let n = 1\nprint(n.x)").message


def test_iteration_sees_snapshot() -> None:
    assert out("let a = [1, 2]\nfor x in a { a.push(x) }\nprint(a)") == "[1, 2, 1, 2]\n"
    assert "cannot iterate over number" in error("for x in 5 { }").message


# ---------------------------------------------------------------- budgets

def test_recursion_limit_is_a_relay_error_and_configurable() -> None:
    e = error("fn f(n) { f(n + 1) }\nf(0)", max_depth=500)
    assert "recursion too deep: more than 500 nested calls" in e.message
    assert out("fn f(n) { if n == 0 { 0 } else { 1 + f(n - 1) } }\nprint(f(9000))") == "9000\n"


def test_time_limit_stops_endless_loops_and_recursion() -> None:
    e = error("let n = 0\nwhile true { n += 1 }", time_limit=0.3)
    assert "time limit of 0.3 s exceeded" in e.message and e.pos.line == 2
    e = error("fn f(n) { f(n) + f(n) }\nfn g(n) { if n == 0 { 0 } else { g(n - 1) + g(n - 1) } }\ng(60)", time_limit=0.3)
    assert "time limit" in e.message


def test_memory_budget() -> None:
    assert "over the memory budget" in error("array(1e12, 0)").message
    assert "over the memory budget" in error('let s = "ab"\nfor i in 0..40 { s = s + s }').message
    assert "too large" in error("let r = 0..1e10").message


def test_relay_0_3_forms(run) -> None:
    src = """
server counter_server {
    state { count: number = 0, name: string = "c" }
    receive fn increment() { state.set("count", state.get("count") + 1) }
    receive fn get() { state.count }
}
message("counter_server", "increment")
send("counter_server", "increment")
print(message("counter_server", "get"))
fn apply(f: function, m: object) -> object { f(m) }
print(apply(fn(m) { m }, {a: :hello}))
let arr = [1, 2, 3]
print(arr.get(1), :sym == "sym", {k: :v})
"""
    assert run(src) == '2\n{a: "hello"}\n2 true {k: "v"}\n'
    with pytest.raises(RelayError, match="no server named 'nope' is running"):
        run('message("nope", "x")')
    with pytest.raises(RelayError, match="apply: parameter 'f' expects function, got number"):
        run("fn apply(f: function) { f() }\napply(1)")


def test_relay_0_3_if_expressions() -> None:
    src = """
let r = if 1 > 2 { "a" } else if 2 > 1 { let z = 3
    z * 2 } else { 0 }
fn f(x) { return (if x { 10 } else { 20 }) + 1 }
fn g(x) { let s = 0
    for i in 0..x { s += if i % 2 == 0 { i } else { 0 } }
    return s }
print(r, if false { 1 }, f(true), f(null), f(0), g(10))
"""
    for tier in ("auto", "interpret"):
        assert out(src, tier=tier) == "6 null 11 21 11 20\n"
    # a branch that ends in a statement has no value; a return inside returns from the function
    assert out("fn h() { let v = if true { return 7 } else { 1 }\n return 0 }\nprint(h(), if true { let q = 1 })") == "7 null\n"
    e = error("@llvm fn f(x) { return if x > 1 { 2 } else { 3 } }")
    assert e.message == "@llvm f: if expressions are not supported by @llvm" and (e.pos.line, e.pos.col) == (1, 24)


def test_relay_0_3_types_strings_and_array_methods() -> None:
    src = """
server s {
    state { posts: [object] = [], grid: [[number]] = [[1]], next_id: number = 1, tags: [string] = ["x"] }
    receive fn add(title: string) -> object {
        set post = {id: state.get("next_id"), title: title}
        set posts = state.get("posts").map(fn(p) { p })
        posts.push(post)
        state.set("posts", posts)
        state.set("next_id", state.get("next_id") + 1)
        post
    }
    receive fn titles() -> [string] { state.get("posts").map(fn(p) { p.get("title") }) }
    receive fn find(id: number) { state.get("posts").find(fn(p) { p.get("id") == id }) }
}
s.add("a")
s.add("b")
print(s.titles(), s.find(2), s.find(9), string(2) + "!", [0, false, null, 1].filter(fn(v) { v }))
print([1, 2, 3].reduce(fn(acc, x) { acc + x }, 10), [4, 5].length(), [].length())
fn total(xs: [number]) -> number { xs.reduce(fn(a, x) { a + x }, 0) }
print(total([1, 2]))
"""
    assert out(src) == '["a", "b"] {id: 2, title: "b"} null 2! [0, 1]\n16 2 0\n3\n'
    assert "arrays have no method 'sort_by' taking 1 argument" in error("[1].sort_by(fn(x) { x })").message
    assert "expects array<number>, got array with a string element" in error('fn total(xs: [number]) { 0 }\ntotal(["a"])').message
    assert "expected a type" in error("fn f(x: [nope]) { }").message


def test_relay_0_3_send_statement(run) -> None:
    src = """
server blog {
    state { posts: [] }
    receive fn create_post(args) { state.posts.push(args.title + ": " + args.content) }
    receive fn all() { state.posts }
}
send "blog" create_post { title: "Hello", content: "first" }
let r = send "blog" create_post {
    title: "Again", content: "second"
}
print(r, blog.all())
"""
    assert run(src) == 'null ["Hello: first", "Again: second"]\n'
    with pytest.raises(RelayError, match="no server named 'nope' is running"):
        run('send "nope" h {}')
    with pytest.raises(RelayError, match="expected '[{]' to start the arguments object"):
        run('send "blog" h 5')

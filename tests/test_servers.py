"""Servers hosted in-process: the semantics the fleet must share."""

from __future__ import annotations

import pytest

from conftest import run_relay
from relay_lang.errors import RelayError

COUNTER = """
server counter {
    state { count: 0, log: [] }
    receive fn incr(by: number) { state.count += by; state.log.push(by); state.count }
    receive fn fail() { state.count = -1; state.log.push("x"); error("refused") }
    receive fn get() { state }
    receive fn me() { self }
    fn helper(x) { x * 2 }
    receive fn double() { helper(state.count) }
}
"""


def out(src: str) -> str:
    return run_relay(src)[0]


def test_calls_sends_and_order() -> None:
    assert out(COUNTER + 'print(counter.incr(2))\nsend(counter, "incr", 3)\nsend(counter, "incr", 4)\n'
               'print(counter.get(), counter.double(), message(counter, "incr", 1))') == \
        "2\n{count: 9, log: [2, 3, 4]} 18 10\n"


def test_sent_messages_are_delivered_by_the_end_of_the_program() -> None:
    assert out(COUNTER + 'send(counter, "incr", 5)\nprint("before")') == "before\n"
    _, value = run_relay(COUNTER + 'send(counter, "incr", 5)\ncounter')
    assert repr(value) == "<server counter>"


def test_failed_handler_rolls_state_back_and_caller_gets_the_error() -> None:
    with pytest.raises(RelayError) as info:
        run_relay(COUNTER + "counter.incr(1)\ncounter.fail()")
    assert info.value.message == "refused"
    assert [name for name, _, _ in info.value.stack] == ["fail"]
    assert out(COUNTER + 'counter.incr(1)\nsend(counter, "fail")\nprint(counter.get())') == \
        "{count: 1, log: [1]}\n"


def test_self_and_type() -> None:
    assert out(COUNTER + "print(counter.me() == counter, type(counter), counter)") == \
        "true server <server counter>\n"


def test_hot_upgrade_keeps_state_and_adds_new_keys() -> None:
    src = COUNTER + "counter.incr(5)\n" + """
server counter {
    state { count: 100, extra: "new" }
    receive fn get() { [state.count, state.extra] }
}
print(counter.get())
"""
    assert out(src) == '[5, "new"]\n'


def test_state_is_private_data_copied_across_messages() -> None:
    src = """
server box {
    state { items: [] }
    receive fn put(x) { state.items.push(x); len(state.items) }
    receive fn all() { state.items }
}
let mine = [1]
box.put(mine)
mine.push(2)
let got = box.all()
got.push(99)
print(box.all())
"""
    assert out(src) == "[[1]]\n"


@pytest.mark.parametrize("src,message", [
    ("counter.nope()", "server counter has no handler 'nope'"),
    ("counter.incr()", "incr expects 1 argument, got 0"),
    ('counter.incr("x")', "parameter 'by' expects number, got string"),
    ("counter.incr(fn() {})", "cannot send a message containing a fn"),
    ('send(counter, "incr", print)', "cannot send a message containing a fn"),
    ('send(1, "incr")', "send: expected a server, got number"),
])
def test_bad_messages(src: str, message: str) -> None:
    with pytest.raises(RelayError) as info:
        run_relay(COUNTER + src)
    assert message in info.value.message


def test_call_cycle_fails_at_once_naming_it() -> None:
    src = """
server a { receive fn go() { b.go() } receive fn ping() { 1 } }
server b { receive fn go() { a.ping() } }
a.go()
"""
    with pytest.raises(RelayError, match=r"call cycle: a -> b -> a"):
        run_relay(src)


def test_server_to_server_calls() -> None:
    src = """
server store { state { v: 0 } receive fn put(x) { state.v = x } receive fn get() { state.v } }
server front { receive fn bump() { store.put(store.get() + 1) } }
front.bump(); front.bump()
print(store.get())
"""
    assert out(src) == "2\n"


def test_state_cannot_hold_functions() -> None:
    src = "server s { state { f: null } receive fn put() { state.f = fn() {} } receive fn get() { state.f } }\n"
    with pytest.raises(RelayError, match="cannot send the state of server s containing a fn"):
        run_relay(src + "s.put()")
    assert out(src + "send(s, \"put\")\nprint(s.get())") == "null\n"


def test_failed_send_is_reported_not_fatal() -> None:
    import io

    from relay_lang.interpreter import Interpreter, run_program
    o, e = io.StringIO(), io.StringIO()
    run_program(COUNTER + 'send(counter, "fail")\nprint(counter.incr(1))', "t.relay", interp=Interpreter(out=o, err=e))
    assert o.getvalue() == "1\n"
    assert "message counter.fail failed" in e.getvalue() and "refused" in e.getvalue()


# ---------------------------------------------------------------- server families

ACCOUNT = """server account[id] {
    state { owner: self.id, balance: print("start " + self.id) ?? 0 }
    receive fn deposit(n: number) { state.balance += n; state.balance }
    receive fn fail() { state.balance = -1; error("refused " + self.id) }
    receive fn get() { state }
    receive fn me() { self }
}
server counter { receive fn get() { 1 } receive fn key() { self.id } }
"""  # 8 lines: a program's own lines start at 9


def test_family_servers_start_at_their_first_message_each_with_its_own_state() -> None:
    src = ACCOUNT + """print("declared")
send(account["ada"], "deposit", 5)
print("sent")
print(account["bob"].deposit(1), account["ada"].deposit(2))
print(account["ada"].get(), account["bob"].get())
"""
    assert out(src) == ("declared\nsent\nstart bob\nstart ada\n1 7\n"
                        '{owner: "ada", balance: 7} {owner: "bob", balance: 1}\n')


def test_messages_sent_to_a_family_server_start_it_when_delivered() -> None:
    assert out(ACCOUNT + 'send(account["ada"], "deposit", 5)\nprint("end")') == "end\nstart ada\n"


def test_family_references_print_compare_and_give_their_key() -> None:
    assert out(ACCOUNT + 'let a = account["ada"]\n'
               'print(a, type(a), a.id, a == account["ada"], a == account["bob"], a.me() == a, a.me().id)\n'
               'print(account, type(account), account.id, account == account, account == a)\n'
               'print(counter.key(), counter.id)') == \
        ('start ada\n<server account[ada]> server ada true false true ada\n'
         '<server account[]> server null true false\nnull null\n')


def test_family_keys_are_strings_or_whole_numbers_as_their_text() -> None:
    assert out(ACCOUNT + 'print(account[7].deposit(1), account["7"].deposit(1), account[7].id, account[-0].id, '
               'account[9007199254740992].id, account["a]b"], account["a]b"].me().id, account["é 1.5"].id)') == \
        'start 7\nstart a]b\n1 2 7 0 9007199254740992 <server account[a]b]> a]b é 1.5\n'


def test_family_servers_named_by_strings() -> None:
    assert out(ACCOUNT + 'send("account[ada]", "deposit", 4)\nprint(message("account[ada]", "deposit", 1), '
               'account["ada"].get())') == 'start ada\n5 {owner: "ada", balance: 5}\n'


@pytest.mark.parametrize("src,message,col", [
    ("account.get()", 'server account is a family: address one of its servers by key, as in account["ada"]', 9),
    ('send(account, "get")', "server account is a family", 1),
    ('message("account", "get")', "server account is a family", 1),
    ('send("account[]", "get")', "server account is a family", 1),
    ('account[1.5].get()', "a server key must be a string or a whole number (up to 2^53), got 1.5", 8),
    ('account[0 / 0]', "got nan", 8),
    ('account[2 ** 60]', "up to 2^53", 8),
    ('account[true]', "a server key must be a string or a whole number, got bool", 8),
    ('account[""]', "a server key cannot be empty", 8),
    ('account["\\n"]', "a server key cannot hold control characters or lone surrogates (U+000A at character 1)", 8),
    ('account[join(array(201, "k"))]', "a server key is at most 200 characters, got 201", 8),
    ('send("account[a\\u{7}]", "get")', "control characters", 1),
    ('account["a"]["b"]', "cannot index server account[a]: it is one server of the family account", 13),
    ('counter["x"]', "cannot index server counter: it is not a family (a family is declared as server counter[id]", 8),
    ('account["a"] = 1', "cannot assign to account[key]", 8),
    ('account["a"].nope()', "server account[a] has no handler 'nope' (handlers: deposit, fail, get, me)", 14),
    ('send(account["a"], "deposit")', "account[a].deposit expects 1 argument, got 0", 1),
    ('account["a"].owner', "servers have no field 'owner'", 14),
    ('account["a"].id = "b"', "cannot set field 'id' of server account[a]", 14),
    ('send("acc[x]", "get")', "no server named 'acc[x]' is running (no family acc is declared)", 1),
    ("server account { }", "server account is a family (server account[id]); it cannot be declared again as a single "
                           "server", 1),
    ("server counter[id] { }", "server counter is a single server; it cannot be declared again as a family", 1),
])
def test_family_errors_are_placed(src: str, message: str, col: int) -> None:
    with pytest.raises(RelayError) as info:
        run_relay(ACCOUNT + src)
    assert message in info.value.message
    assert (info.value.pos.line, info.value.pos.col) == (9, col), str(info.value)
    assert "Traceback" not in str(info.value)


def test_a_call_delivers_what_is_queued_before_its_own_message_is_refused() -> None:
    src = 'server c { receive fn hi() { print("hi") } }\nsend(c, "hi")\nc.nope()'
    assert io_run(src) == ("hi\n", "test.relay:3:3: error: server c has no handler 'nope' (handlers: hi)")
    assert io_run(ACCOUNT + 'send(account["a"], "get")\naccount["a"].nope()') == \
        ("start a\n", "test.relay:10:14: error: server account[a] has no handler 'nope' (handlers: deposit, fail, get, me)")


def io_run(src: str) -> tuple[str, str]:
    import io

    from relay_lang.interpreter import Interpreter, run_program
    o = io.StringIO()
    try:
        run_program(src, "test.relay", interp=Interpreter(out=o, err=io.StringIO()))
    except RelayError as err:
        return o.getvalue(), str(err)
    return o.getvalue(), ""


def test_family_handler_arguments_are_checked_as_a_plain_servers_are() -> None:
    with pytest.raises(RelayError) as info:
        run_relay(ACCOUNT + 'account["a"].deposit("x")')
    assert info.value.message == "deposit: parameter 'n' expects number, got string"
    assert (info.value.pos.line, info.value.pos.col) == (3, 24)  # the parameter, as for a plain server


def test_state_cannot_be_read_in_a_familys_initial_state() -> None:
    from relay_lang.errors import RelaySyntaxError
    with pytest.raises(RelaySyntaxError) as info:
        run_relay("server a[id] {\n  state { x: 1, y: state.x }\n}")
    assert "'state' cannot be read while the initial state of family a is made" in info.value.message
    assert (info.value.pos.line, info.value.pos.col) == (2, 20)


def test_family_handler_failure_rolls_back_that_server_only() -> None:
    with pytest.raises(RelayError) as info:
        run_relay(ACCOUNT + 'account["a"].deposit(3)\naccount["b"].deposit(4)\naccount["a"].fail()')
    assert info.value.message == "refused a"
    assert (info.value.pos.line, info.value.pos.col, info.value.stack[0][0]) == (4, 45, "fail")
    assert out(ACCOUNT + 'account["a"].deposit(3)\naccount["b"].deposit(4)\nsend(account["a"], "fail")\n'
               'print(account["a"].get().balance, account["b"].get().balance)') == "start a\nstart b\n3 4\n"


def test_a_failed_initial_state_starts_nothing_and_the_next_message_tries_again() -> None:
    src = """
let ok = false
server s[id] {
    state { n: if ok { 1 } else { error("not yet " + self.id) } }
    receive fn get() { state.n }
}
fn get() { s["k"].get() }
"""
    with pytest.raises(RelayError) as info:
        run_relay(src + "get()")
    assert info.value.message == "not yet k"
    assert (info.value.pos.line, info.value.pos.col) == (4, 35)
    assert [(name, pos.line) for name, pos, _ in info.value.stack] == [("state of s", 7), ("get", 8)]
    import io

    from relay_lang.interpreter import Interpreter, run_program
    o, e = io.StringIO(), io.StringIO()
    run_program(src + 'send(s["k"], "get")\nok = true\nprint(get())', "t.relay", interp=Interpreter(out=o, err=e))
    assert o.getvalue() == "1\n" and e.getvalue() == ""  # the send is delivered at the call, once ok
    o, e = io.StringIO(), io.StringIO()
    run_program(src + 'send(s["k"], "get")\nprint("on")', "t.relay", interp=Interpreter(out=o, err=e))
    assert o.getvalue() == "on\n" and "message s[k].get failed" in e.getvalue() and "not yet k" in e.getvalue()


def test_family_call_cycles_are_named() -> None:
    src = """
server a[id] { receive fn go(other) { a[other].back(id_of(self)) } receive fn back(k) { a[k].go("z") } }
fn id_of(s) { s.id }
a["x"].go("y")
"""
    with pytest.raises(RelayError, match=r"call cycle: a\[x\] -> a\[y\] -> a\[x\]"):
        run_relay(src)
    with pytest.raises(RelayError, match=r"call cycle: a\[x\] -> a\[x\]"):
        run_relay("server a[id] { state { n: self.one() } receive fn one() { 1 } }\na[\"x\"].one()")


def test_family_hot_upgrade_reaches_each_server_at_its_next_message() -> None:
    src = ACCOUNT + """account["ada"].deposit(5)
account["bob"].deposit(1)
server account[id] {
    state { owner: "?", balance: 100, tag: print("upgrade " + self.id) ?? ("vip " + self.id) }
    receive fn deposit(n: number) { state.balance += 2 * n; state.balance }
    receive fn get() { state }
}
print("upgraded")
print(account["bob"].deposit(1))
print(account["bob"].get(), account["cy"].get())
print(account["ada"].get())
"""
    assert out(src) == ('start ada\nstart bob\nupgraded\nupgrade bob\n3\nupgrade cy\n'
                        '{owner: "bob", balance: 3, tag: "vip bob"} {owner: "?", balance: 100, tag: "vip cy"}\n'
                        'upgrade ada\n{owner: "ada", balance: 5, tag: "vip ada"}\n')
    with pytest.raises(RelayError, match="server account\\[ada\\] has no handler 'me'"):
        run_relay(src + 'account["ada"].me()')


def test_a_failed_upgrade_leaves_the_server_as_it_was_until_it_succeeds() -> None:
    src = """
let ok = false
server s[id] { state { n: 1 } receive fn get() { state } }
s["k"].get()
server s[id] { state { n: 2, m: if ok { 3 } else { error("not yet") } } receive fn get() { [state] } }
"""
    with pytest.raises(RelayError, match="not yet"):
        run_relay(src + 's["k"].get()')
    assert out(src + 'send(s["k"], "get")\nok = true\nprint(s["k"].get())') == "[{n: 1, m: 3}]\n"


def test_repl_redeclaring_a_family_upgrades_every_server_keeping_state() -> None:
    import io

    from relay_lang.interpreter import Interpreter, run_program
    o = io.StringIO()
    interp = Interpreter(out=o, err=io.StringIO(), repl=True)
    entries = [
        "server account[id] {\n state { balance: 0 }\n receive fn deposit(n) { state.balance += n; state.balance }\n}",
        'account["ada"].deposit(5)', 'account["bob"].deposit(1)',
        "server account[id] {\n state { balance: 100, owner: self.id }\n"
        " receive fn deposit(n) { state.balance += 2 * n; state.balance }\n receive fn get() { state }\n}",
    ]
    values = [run_program(src, f"<repl {i}>", interp=interp) for i, src in enumerate(entries)]
    assert values[1:3] == [5.0, 1.0]
    assert run_program('account["ada"].get()', "<repl 5>", interp=interp) == {"balance": 5.0, "owner": "ada"}
    assert run_program('account["bob"].deposit(1)', "<repl 6>", interp=interp) == 3.0
    assert run_program('account["cy"].get()', "<repl 7>", interp=interp) == {"balance": 100.0, "owner": "cy"}
    with pytest.raises(RelayError, match="cannot be declared again as a single server"):
        run_program("server account { }", "<repl 8>", interp=interp)
    assert run_program('account["ada"].deposit(1)', "<repl 9>", interp=interp) == 7.0


def test_a_runtime_without_families_refuses_them_with_a_relay_error() -> None:
    import io

    from relay_lang.interpreter import Interpreter, run_program

    class PlainRuntime:
        def declare(self, name: str, handlers: dict, initial_state: dict) -> object:
            raise AssertionError

    interp = Interpreter(out=io.StringIO(), runtime=PlainRuntime())  # type: ignore[arg-type]
    with pytest.raises(RelayError) as info:
        run_program("\nserver a[id] { }", "t.relay", interp=interp)
    assert info.value.message == "server family a: this runtime does not host server families"
    assert (info.value.pos.line, info.value.pos.col) == (2, 1)


def test_family_handlers_compile_with_llvm_and_self_id_is_refused_there() -> None:
    from relay_lang.interpreter import Interpreter, run_program
    src = """
server acc[id] {
    state { total: 0 }
    @llvm
    receive fn sum(n: number) -> number {
        let s = 0
        for i in 0..n { s += i }
        s
    }
    receive fn add(n) { state.total += sum(n); state.total }
}
print(acc["a"].sum(10), acc["a"].add(4), acc[2].add(5), acc["a"].add(3))
"""
    import io
    o = io.StringIO()
    interp = Interpreter(out=o, err=io.StringIO())
    run_program(src, "t.relay", interp=interp)
    assert o.getvalue() == "45 6 10 9\n"
    assert "sum: llvm (@llvm, (number) at O2)" in interp.router.explain()
    assert run_relay(src, tier="interpret")[0] == "45 6 10 9\n"
    with pytest.raises(RelayError) as info:
        run_relay("server acc[id] {\n  @llvm\n  receive fn who() { self.id }\n}")
    assert info.value.kind == "compile error"
    assert info.value.message == "@llvm who: server keys (self.id) are not supported by @llvm"
    assert (info.value.pos.line, info.value.pos.col) == (3, 27)


# ---------------------------------------------------------------- server names (relay_lang.names)


def test_instance_names_and_their_helpers() -> None:
    from relay_lang.names import family_name, instance_name, parse_instance_name, split_method
    from relay_lang.values import Array, ServerRef, copy_data, key_text
    assert instance_name("account", "ada") == "account[ada]" and family_name("account") == "account[]"
    assert [parse_instance_name(n) for n in ("account[ada]", "counter", "account[a]b]", "a[[x]]", "a[ x ]")] == \
        [("account", "ada"), ("counter", None), ("account", "a]b"), ("a", "[x]"), ("a", " x ")]
    for key in ("ada", "a]b", "[", "é", "x" * 200):
        assert parse_instance_name(instance_name("account", key)) == ("account", key)
    assert [key_text(k) for k in (7.0, -0.0, -3.0, 2.0 ** 53, "7")] == ["7", "0", "-3", "9007199254740992", "7"]
    ref = ServerRef("account[ada]")
    assert (ref.family, ref.key, ref.is_family) == ("account", "ada", False)
    assert (ServerRef("account[]").family, ServerRef("account[]").is_family) == ("account", True)
    assert (ServerRef("counter").family, ServerRef("counter").key) == (None, None)
    assert (ServerRef("not a name[x]").family, ServerRef("[x]").family) == (None, None)
    assert copy_data(Array([ref]))[0] == ref and ref == ServerRef(instance_name("account", key_text(7.0)).replace("7", "ada"))
    assert split_method("account[a.b].deposit") == ("account[a.b]", "deposit")
    assert split_method("counter.incr") == ("counter", "incr")


@pytest.mark.parametrize("text,message", [
    ("account[]", "names the family account itself, not one of its servers"),
    ("account[ada", "ending in ']'"),
    ("account[", "ending in ']'"),
    ("9lives[x]", "a family name (before '[') is an identifier"),
    ("[x]", "a family name (before '[') is an identifier"),
    ("two words", "a server name is an identifier"),
    ("", "a server name is an identifier"),
    ("account[\t]", "control characters"),
    ("account[\ud800]", "lone surrogates"),
    ("account[" + "k" * 201 + "]", "at most 200 characters"),
])
def test_parse_instance_name_refuses_bad_names(text: str, message: str) -> None:
    from relay_lang.names import parse_instance_name
    with pytest.raises(RelayError, match=message.replace("[", "\\[").replace("(", "\\(").replace(")", "\\)")):
        parse_instance_name(text)


@pytest.mark.parametrize("call", ["instance_name('a b', 'k')", "instance_name('a', '')", "split_method('counter')",
                                  "split_method('.incr')", "split_method('counter.9')", "key_text(1.5)", "key_text(None)"])
def test_name_helpers_refuse_bad_parts(call: str) -> None:
    from relay_lang import names, values
    with pytest.raises(RelayError):
        eval(call, {"instance_name": names.instance_name, "split_method": names.split_method,  # noqa: S307
                    "key_text": values.key_text})

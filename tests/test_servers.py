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

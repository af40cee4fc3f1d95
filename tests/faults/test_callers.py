"""Every caller gets an answer: a call across a Redis outage, a call that gives up (its outcome fetched by
its message id), and call cycles across messages failing at once instead of deadlocking."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from relay_lang.errors import RelayError
from relay_workers.client import FleetUnreachable
from relay_workers.devfleet import ROOT

from .conftest import deploy, record

SLOW = """
server slow {
    state { n: 0 }
    receive fn work(s) { let t = clock()
        while clock() - t < s { }
        state.n += 1
        state.n }
    receive fn get() { state.n }
}
"""


def test_a_call_in_flight_across_a_redis_outage_gets_its_reply(fleet, client, redis_server) -> None:
    fleet.start("w1")
    deploy(client, SLOW)
    fleet.start("w2")
    outcomes: dict[str, tuple[str, object, float]] = {}

    def call(name: str, timeout: float) -> None:
        caller = fleet.client()
        started = time.monotonic()
        try:
            value = caller.call("slow", "work", 0.5, timeout=timeout, message_id=f"{name}-1")
            outcomes[name] = ("reply", value, time.monotonic() - started)
        except RelayError as err:
            outcomes[name] = ("error", err, time.monotonic() - started)
        caller.close()

    # Both journalled before the store goes: one waits 30 s (its reply comes after the outage), one 3 s (it
    # gives up during the outage, and its outcome is fetched by its message id afterwards).
    threads = [threading.Thread(target=call, args=(name, timeout)) for name, timeout in (("patient", 30), ("brief", 3))]
    for t in threads:
        t.start()
    time.sleep(0.25)  # both journalled; the first is being handled
    down = time.monotonic()
    redis_server.restart(down_for=5.0)
    outage = time.monotonic() - down
    for t in threads:
        t.join(60)
    kind, value, seconds = outcomes["patient"]
    assert kind == "reply", value
    brief_kind, gave_up, brief_s = outcomes["brief"]
    assert brief_kind == "error" and isinstance(gave_up, FleetUnreachable), gave_up
    assert gave_up.message_id == "brief-1" and "relay result brief-1" in str(gave_up)
    fetched = client.result("brief-1", timeout=30)
    env = dict(os.environ, **{k: v for k, v in fleet.env.items() if k.startswith("RELAY_")}, PYTHONPATH=str(ROOT))
    cli = subprocess.run([sys.executable, "-m", "relay_workers.cli", "result", "brief-1"], capture_output=True,
                         text=True, env=env, timeout=60)
    applied = client.call("slow", "get")
    record("a call in flight across a 5 s redis-server outage", sent=2, applied=applied, reply_received=value,
           reply_after_s=seconds, outage_s=outage, gave_up_after_s=brief_s, fetched_by_id=fetched,
           relay_result=cli.stdout.strip())
    assert sorted([value, fetched]) == [1, 2] and applied == 2  # each applied once
    assert cli.returncode == 0 and cli.stdout.strip() == str(int(fetched)), cli.stderr
    with pytest.raises(RelayError, match="no deployed server knows a message 'nowhere-1'"):
        client.result("nowhere-1")


CYCLE = """
server a {
    state { n: 0 }
    receive fn f() { state.n += 1
        let t = clock()
        while clock() - t < 0.15 { }
        b.g() }
    receive fn get() { state.n }
}
server b {
    state { n: 0 }
    receive fn g() { state.n += 1
        let t = clock()
        while clock() - t < 0.15 { }
        a.f() }
    receive fn get() { state.n }
}
"""


def test_a_call_cycle_across_two_messages_fails_at_once(fleet, client) -> None:
    fleet.start("w1")
    fleet.start("w2")
    deploy(client, CYCLE)
    errors: dict[str, tuple[str, float]] = {}

    def call(server: str, handler: str) -> None:
        caller = fleet.client()
        started = time.monotonic()
        try:
            caller.call(server, handler, timeout=10)
            errors[server] = ("no error", time.monotonic() - started)
        except RelayError as err:
            errors[server] = (err.message, time.monotonic() - started)
        caller.close()

    threads = [threading.Thread(target=call, args=args) for args in (("a", "f"), ("b", "g"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    states = (client.call("a", "get", timeout=5), client.call("b", "get", timeout=5))
    started = time.monotonic()
    answering = [client.call("a", "get", timeout=5) for _ in range(10)] + [client.call("b", "get", timeout=5)]
    after_ms = 1000 * (time.monotonic() - started) / len(answering)
    edges = client.ledger.r.keys("{relay}:waitfor:*")
    record("a <-> b call cycle across two messages", a_error=errors["a"][0], a_s=errors["a"][1],
           b_error=errors["b"][0], b_s=errors["b"][1], state_after=states, calls_after_ms=after_ms,
           wait_for_records_left=len(edges))
    for server in ("a", "b"):
        message, seconds = errors[server]
        assert message.startswith("call cycle: ") and seconds < 1.0, errors
    assert states == (0, 0) and edges == []  # both handlers rolled back; no wait-for record left

"""kill -9 and restarts: handler effects once, replies never lost, nothing lost or repeated."""

from __future__ import annotations

import threading
import time

import pytest

from relay_workers.ledger import key

from .conftest import SEQ, deploy, owner, record, settle, wait_until

HOP = """
server hop {
    state { n: 0 }
    receive fn fwd(k) { let t = clock()
        while clock() - t < 0.005 { }
        sink.add("hop", k)
        send(sink, "note", k)
        state.n += 1
        state.n }
}
"""

SINK = SEQ.format(name="sink").replace("receive fn stats()", """receive fn note(k) { state.notes[str(k)] = true
        state.notecount += 1 }
    receive fn notes() { [len(keys(state.notes)), state.notecount] }
    receive fn stats()""").replace("last: {} }", "last: {}, notes: {}, notecount: 0 }")


def test_handler_effects_once_through_two_owner_kills(fleet, client) -> None:
    w1 = fleet.start("w1")
    deploy(client, SINK)
    w2 = fleet.start("w2")
    deploy(client, HOP)
    assert owner(client, "sink") == w1 and owner(client, "hop") == w2
    total = 200
    for k in range(total):
        client.send("hop", "fwd", k)

    def hop_info() -> dict:
        return next(s for s in client.servers() if s["name"] == "hop")

    failovers = []
    for _round in range(2):  # kill hop's owner while it forwards, restart it under its name
        wait_until(lambda: not any(s["queued"] == 0 for s in client.servers() if s["name"] == "hop"), 5, "hop busy")
        time.sleep(0.3)
        victim = owner(client, "hop")
        dead_host = hop_info()["host"]
        fleet.kill(victim)
        killed = time.monotonic()
        fleet.start(victim.split("@")[0])
        wait_until(lambda dead=dead_host: hop_info()["host"] != dead and hop_info()["status"] == "running", 30,
                   "hop running again")
        failovers.append(time.monotonic() - killed)
    figures = settle(client, "sink", total, timeout=120)
    wait_until(lambda: client.call("sink", "notes")[1] >= total, 60, "every note")
    distinct_notes, notes = client.call("sink", "notes")
    info = next(s for s in client.servers() if s["name"] == "hop")
    record("hop.fwd -> sink.add (call) + send, hop's owner killed twice", **figures, notes_applied=int(notes),
           notes_lost=total - int(distinct_notes), notes_duplicated=int(notes - distinct_notes),
           restarts=info["restarts"], failover_s=max(failovers))
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert (int(distinct_notes), int(notes)) == (total, total)
    assert info["restarts"] == 2


def test_kill_minus_nine_mid_stream(fleet, client) -> None:
    first = fleet.start("w1")
    deploy(client, SEQ.format(name="seq"))
    fleet.start("w2")
    total = 400
    for k in range(total):
        client.send("seq", "add", "p0", k)
    wait_until(lambda: client.call("seq", "stats", timeout=2)[0] >= 50, 30, "50 applied")
    fleet.kill(first)
    killed = time.monotonic()
    wait_until(lambda: client.call("seq", "stats", timeout=1), 30, "seq answering again")
    failover = time.monotonic() - killed
    figures = settle(client, "seq", total)
    record("kill -9 of the owner mid-stream", **figures, failover_s=failover)
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert figures["applied"] == total


def test_kill_minus_nine_mid_batch(fleet, client) -> None:
    first = fleet.start("w1")
    deploy(client, SEQ.format(name="seq").replace("receive fn stats()", """receive fn hold(s) { let t = clock()
        while clock() - t < s { } }
    receive fn stats()""").replace(  # 2 ms per message: 25 to a batch
        "receive fn add(p, k) {", "receive fn add(p, k) { let t = clock()\n        while clock() - t < 0.002 { }"))
    fleet.start("w2")
    total = 300
    client.send("seq", "hold", 1.5)  # the sends queue up behind it
    for k in range(total):
        client.send("seq", "add", "p0", k)
    store = client.ledger.r
    wait_until(lambda: store.hlen(key("attempts", "seq")) >= 10, 30, "a batch of 10 or more taken")
    fleet.kill(first)  # taken, being applied, not committed
    taken = store.hlen(key("attempts", "seq"))
    committed = client.ledger.applied_count("seq")
    killed = time.monotonic()
    wait_until(lambda: client.call("seq", "stats", timeout=1), 30, "seq answering again")
    failover = time.monotonic() - killed
    figures = settle(client, "seq", total)
    record("kill -9 of the owner mid-batch", **figures, taken_uncommitted=taken, committed_before=committed,
           failover_s=failover)
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert figures["applied"] == total and taken >= 10 and committed < total


def test_a_waiting_call_gets_its_reply_across_a_same_name_restart(fleet, client) -> None:
    first = fleet.start("w1")
    deploy(client, "server slow {\n state { n: 0 }\n receive fn work(s) { let t = clock()\n"
                   " while clock() - t < s { }\n state.n += 1\n state.n } }")
    replies: list = []
    caller = threading.Thread(target=lambda: replies.append(client.call("slow", "work", 2, timeout=60)))
    started = time.monotonic()
    caller.start()
    time.sleep(1.0)  # the handler is running
    fleet.kill(first)
    fleet.start("w1")  # a process manager restarts it under the same name
    caller.join(60)
    took = time.monotonic() - started
    later = client.call("slow", "work", 0)
    record("a call waiting across kill -9 and a same-name restart", reply=replies, seconds=took, next_reply=later)
    assert replies == [1] and later == 2


@pytest.mark.parametrize("down_for", [3.0, 30.0])
def test_redis_restarted_mid_stream(fleet, client, redis_server, down_for) -> None:
    fleet.start("w1")
    deploy(client, SEQ.format(name="seq"))
    fleet.start("w2")
    sent = 0
    retries = 0
    restarter = threading.Timer(0.5, lambda: redis_server.restart(down_for=down_for))
    restarter.start()
    deadline = time.monotonic() + down_for + 3
    while time.monotonic() < deadline:
        try:
            client.send("seq", "add", "p0", sent, message_id=f"p0-{sent}")
            sent += 1
        except Exception:  # noqa: BLE001 - the store is down: the same id again
            retries += 1
            time.sleep(0.1)
    restarter.join()
    figures = settle(client, "seq", sent, timeout=90)
    restarts = next(s for s in client.servers() if s["name"] == "seq")["restarts"]
    record(f"redis-server down for {down_for:g} s mid-stream", **figures, producer_retries=retries, restarts=restarts)
    assert restarts == 0  # the hosts were not declared dead for the store's silence
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert figures["applied"] == sent

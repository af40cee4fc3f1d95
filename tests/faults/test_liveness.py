"""Liveness that survives a blip: reset store connections of a live worker are not a death.

Default settings (heartbeat 1 s, lease 6 s, host TTL 8 s) and `celery -A relay_workers beat` running, as in
test_supervision: a closed connection makes a host a suspect, never dead at once, and a commit that fails
because its connection was reset is not charged to its messages as an attempt.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis

from relay_workers.devfleet import LocalFleet

from .conftest import SEQ, deploy, owner, record, settle


@pytest.fixture
def supervised(redis_server, tmp_path):
    logs = tmp_path / "supervised-logs"
    logs.mkdir()
    fleet = LocalFleet.on(redis_server.url, logs=logs)  # the default settings
    fleet.start_beat()
    yield fleet
    fleet.stop_all()


def group_ports(pgid: int) -> set[int]:
    """The local TCP ports of every process of a process group (a worker and its pool children)."""
    inodes = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[len("socket:["):-1])
        except OSError:  # a process or descriptor that went away meanwhile
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def reset_store_connections(store: redis.Redis, pgid: int) -> int:
    """CLIENT KILL of every store connection (db 2) of the worker's processes, found in CLIENT LIST; returns
    how many were closed."""
    ports = group_ports(pgid)
    killed = 0
    for client in store.client_list():
        if client.get("db") == "2" and int(client["addr"].rsplit(":", 1)[1]) in ports:
            killed += int(store.execute_command("CLIENT", "KILL", "ID", client["id"]))
    return killed


def test_eight_resets_of_a_live_owners_store_connections_are_no_death(supervised, redis_server) -> None:
    client = supervised.client()
    first = supervised.start("w1")
    deploy(client, SEQ.format(name="seq"))
    supervised.start("w2")
    assert owner(client, "seq") == first
    host = next(s["host"] for s in client.servers() if s["name"] == "seq")
    sent = [0]
    done = threading.Event()

    def produce() -> None:  # numbered sends; one that fails is sent again with the same id (applied once)
        producer = supervised.client()
        while not done.is_set():
            try:
                producer.send("seq", "add", "p0", sent[0], message_id=f"p0-{sent[0]}")
                sent[0] += 1
            except Exception:  # noqa: BLE001 - the same id again
                time.sleep(0.02)
            time.sleep(0.005)
        producer.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    store = redis.Redis.from_url(f"{redis_server.url}/2")
    resets, closed, every, everything = 8, 0, 2.0, 0
    started = time.monotonic()
    for i in range(resets):
        time.sleep(max(0.0, started + (i + 0.5) * every - time.monotonic()))
        if i % 4 == 3:  # a blip of the whole store: every client's connections, both workers', beat's, ours
            closed += int(store.execute_command("CLIENT", "KILL", "TYPE", "normal"))
            everything += 1
        else:  # the store connections of whichever worker owns seq now
            closed += reset_store_connections(store, supervised.workers[owner(client, "seq")].pid)
    span = time.monotonic() - started
    time.sleep(every)  # the last reset's suspicion checked, with messages flowing
    done.set()
    thread.join()
    figures = settle(client, "seq", sent[0])
    seq = next(s for s in client.servers() if s["name"] == "seq")
    dead_letters = len(client.dead_letters())
    log = supervised.log(first)
    record(f"{resets} resets of a live owner's store connections in {span:.0f} s (default settings, beat)",
           **figures, resets_of_every_client=everything, connections_closed=closed, restarts=seq["restarts"],
           dead_letters=dead_letters, commits_retried=log.count("server seq: store error"), owner_kept=seq["host"] == host)
    assert closed >= resets  # each reset closed at least one connection of the worker
    assert (seq["restarts"], dead_letters, seq["status"], seq["host"]) == (0, 0, "running", host)
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert figures["applied"] == sent[0] and "was declared dead" not in log
    client.close()


def test_a_host_taking_a_message_again_is_not_an_attempt(redis_server) -> None:
    """The ledger's count of attempts: a host that takes a message again (its commit failed: a reset
    connection, the store away) charges nothing; a new owner taking it uncommitted charges its owner's death."""
    from relay_workers.ledger import Ledger
    from relay_workers.registry import Registry
    from relay_workers.store import connect

    store = connect(f"{redis_server.url}/2")
    Registry(store, 8).register("seq", "server seq { }", "<test>")
    ledger = Ledger(store, 6)
    for k in range(3):
        ledger.journal("seq", f"m{k}", "add", ["p", k], [], wait=False)
    retakes = [[(m.id, m.attempts) for m in ledger.take("seq", "w1#1.a", 10).messages] for _ in range(5)]
    store.delete("{relay}:lease:seq")  # w1 died: the supervisor dropped its lease
    after_death = [(m.id, m.attempts) for m in ledger.take("seq", "w2#2.b", 10).messages]
    again = [(m.id, m.attempts) for m in ledger.take("seq", "w2#2.b", 10).messages]
    record("a message taken again by its owner 5 times, then by the next owner", attempts_by_owner=retakes[-1],
           after_death=after_death, next_owner_again=again)
    assert retakes == [[("m0", 1), ("m1", 1), ("m2", 1)]] * 5
    assert after_death == again == [("m0", 2)]  # its owner died with it: counted once, taken alone

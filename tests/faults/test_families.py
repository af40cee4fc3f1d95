"""Servers of a family under faults: activation and passivation while messages stream, a kill -9 while
servers are being activated, a hot upgrade while messages stream, and a worker paused under 20 producers.

Each server of the family checks exactly-once and per-producer order itself (SEQ's rule); every case
prints sent, applied, lost, duplicated and order violations, summed over the servers it used."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from relay_workers.devfleet import LocalFleet

from .conftest import FAST, SEQ, record, wait_until

FAMILY = SEQ.format(name="seqs[id]")
UPGRADED = FAMILY.replace("receive fn stats()", "receive fn who() { self.id }\n    receive fn stats()")


@pytest.fixture
def fleet(redis_server, tmp_path):
    """The fault suite's timings, and servers let go after 0.4 s without a message."""
    logs = tmp_path / "logs"
    logs.mkdir()
    f = LocalFleet.on(redis_server.url, logs=logs, RELAY_IDLE_TIMEOUT="0.4", **FAST)
    yield f
    f.stop_all()


def produce(client, names: list[str], producer: str, count: int, pause: float = 0.0, seed: int = 0) -> None:
    """Sends add(producer, k) for k = 0 .. count - 1 to each server in turn, pausing up to `pause` s."""
    rng = random.Random(seed)
    for k in range(count):
        for name in names:
            client.send(name, "add", producer, k)
        if pause:
            time.sleep(rng.uniform(0, pause))


def totals(client, names: list[str], sent_each: int, timeout: float = 120) -> dict:
    """Waits until every server applied what it will, and sums its figures (see conftest.settle)."""
    wait_until(lambda: all(client.ledger.queued(n) == 0 and client.call(n, "stats", timeout=10)[3] >= sent_each
                           for n in names), timeout, f"{len(names)} servers to apply {sent_each} messages each")
    sums = {"sent": sent_each * len(names), "applied": 0, "lost": 0, "duplicated": 0, "order_violations": 0}
    for name in names:
        n, dup, gap, _ = (int(x) for x in client.call(name, "stats"))
        sums["applied"] += n
        sums["lost"] += sent_each - (n - dup)
        sums["duplicated"] += dup
        sums["order_violations"] += gap
    return sums


def assert_exact(figures: dict) -> None:
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["order_violations"] == 0, figures


def test_servers_let_go_and_activated_again_while_messages_stream(fleet, client) -> None:
    fleet.start("w1")
    fleet.start("w2")
    client.deploy(FAMILY)
    names = [f"seqs[{k}]" for k in range(6)]
    inactive_seen = set()
    done = threading.Event()

    def watch() -> None:  # how often a server is seen inactive between its messages
        while not done.is_set():
            for name in names:
                if client.registry.owner(name) == "":
                    inactive_seen.add((name, round(time.monotonic(), 1)))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    producers = [threading.Thread(target=produce, args=(fleet.client(), names, f"p{i}", 25, 0.9, i)) for i in range(3)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    done.set()
    watcher.join()
    figures = totals(client, names, 75)
    record("family servers let go (idle 0.4 s) and activated again, 3 producers x 25 rounds x 6 servers",
           inactive_observations=len(inactive_seen), **figures)
    assert_exact(figures)
    assert inactive_seen  # they were let go between bursts


def test_kill_9_of_an_owner_while_servers_are_activated(fleet, client) -> None:
    w1 = fleet.start("w1")
    fleet.start("w2")
    fleet.start_beat()
    client.deploy(FAMILY)
    names = [f"seqs[k{k}]" for k in range(40)]
    producer = threading.Thread(target=produce, args=(fleet.client(), names, "p", 10, 0.05))
    producer.start()
    time.sleep(0.3)  # servers are being activated on both workers
    fleet.kill(w1)
    killed = time.monotonic()
    producer.join()
    figures = totals(client, names, 10)
    record("kill -9 of an owner while 40 family servers are activated", failover_s=time.monotonic() - killed,
           **figures)
    assert_exact(figures)


def test_a_hot_upgrade_of_the_family_while_messages_stream(fleet, client) -> None:
    fleet.start("w1")
    fleet.start("w2")
    client.deploy(FAMILY)
    names = [f"seqs[u{k}]" for k in range(8)]
    producers = [threading.Thread(target=produce, args=(fleet.client(), names, f"p{i}", 40, 0.02, i)) for i in range(2)]
    for p in producers:
        p.start()
    time.sleep(0.5)
    client.deploy(UPGRADED)
    for p in producers:
        p.join()
    figures = totals(client, names, 80)
    record("hot upgrade of a family while 2 producers stream to 8 of its servers", **figures)
    assert_exact(figures)
    assert [client.call(n, "who") for n in names] == [n[len("seqs["):-1] for n in names]


def test_20_producers_to_2000_servers_with_a_worker_paused_for_12_s(fleet, client) -> None:
    fleet.start("w1")
    w2 = fleet.start("w2")
    fleet.start_beat()
    client.deploy(FAMILY)
    names = [f"seqs[s{k}]" for k in range(2000)]

    def producer(i: int) -> None:
        c = fleet.client()
        mine = names[i * 100:(i + 1) * 100]  # 200 sends each: 2 to each of 100 servers
        produce(c, mine, f"p{i}", 2)
        c.close()

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    fleet.signal(w2, signal.SIGSTOP)
    time.sleep(12)
    fleet.signal(w2, signal.SIGCONT)
    for t in threads:
        t.join()
    figures = totals(client, names, 2, timeout=300)
    record("20 producers x 200 sends to 2,000 family servers, one worker SIGSTOPped 12 s", **figures)
    assert_exact(figures)

"""Real fencing: a paused owner loses its servers and can never write again; a long handler keeps its server."""

from __future__ import annotations

import signal
import statistics
import threading
import time

import pytest

from .conftest import SEQ, deploy, owner, record, settle, wait_until


class Producer:
    """Sends add(p, k) in order from a thread; a send that fails is retried with the same id (applied once)."""

    def __init__(self, fleet, name: str = "p0") -> None:
        self.client = fleet.client()
        self.name = name
        self.sent = 0
        self.running = threading.Event()
        self.running.set()
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.done:
            if not self.running.wait(0.05):
                continue
            message_id = f"{self.name}-{self.sent}"
            try:
                self.client.send("seq", "add", self.name, self.sent, message_id=message_id)
            except Exception:  # noqa: BLE001 - the fleet is failing over: the same id again
                time.sleep(0.05)
                continue
            self.sent += 1
            time.sleep(0.005)

    def stop(self) -> int:
        self.done = True
        self.thread.join()
        self.client.close()
        return self.sent


@pytest.mark.parametrize("new_owner", ["idle", "busy"])
def test_sigstop_past_the_lease(fleet, client, new_owner) -> None:
    first = fleet.start("w1")
    deploy(client, SEQ.format(name="seq"))
    second = fleet.start("w2")
    assert owner(client, "seq") == first
    producer = Producer(fleet)
    time.sleep(1.0)
    fleet.signal(first, signal.SIGSTOP)
    paused = time.monotonic()
    failover = wait_until(lambda: owner(client, "seq") == second and client.call("seq", "stats", timeout=1), 30,
                          "the second worker to serve seq")
    time.sleep(1.0)  # the new owner applies messages the paused one never will
    if new_owner == "idle":
        producer.running.clear()
        time.sleep(0.5)
    fleet.signal(first, signal.SIGCONT)
    resumed_after = time.monotonic() - paused
    time.sleep(2.0)  # the resumed worker learns it lost the server; messages keep flowing
    producer.running.set()
    time.sleep(1.0)
    sent = producer.stop()
    figures = settle(client, "seq", sent)
    latencies = []
    for _ in range(20):  # no ping-pong between the two workers
        t = time.monotonic()
        client.call("seq", "stats", timeout=10)
        latencies.append(time.monotonic() - t)
    record(f"SIGSTOP past the lease, new owner {new_owner}", **figures, failover_s=failover,
           paused_s=resumed_after, call_p50_ms_after=1000 * statistics.median(latencies))
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert figures["applied"] == sent
    assert owner(client, "seq") == second
    assert statistics.median(latencies) < 0.5


def test_a_handler_longer_than_the_host_ttl_keeps_its_server(fleet, client) -> None:
    fleet.start("w1", pool=["-P", "solo"])  # the pool that used to block its own heartbeat
    deploy(client, "server slow {\n state { n: 0 }\n receive fn work(s) { let t = clock()\n"
                   " while clock() - t < s { }\n state.n += 1\n state.n } }")
    fleet.start("w2")
    started = time.monotonic()
    reply = client.call("slow", "work", 7, timeout=60)  # host TTL 3 s, lease 2 s
    took = time.monotonic() - started
    info = next(s for s in client.servers() if s["name"] == "slow")
    record("handler of 7 s, host TTL 3 s", reply=reply, seconds=took, restarts=info["restarts"])
    assert reply == 1 and info["restarts"] == 0 and info["owner"].startswith("w1@")
    assert client.call("slow", "work", 0) == 2  # applied once: the 7-second message was not run twice

"""kill -9 of a server's owner: another worker takes over from the checkpoint.

Counts are printed: messages lost (sent but never applied) and duplicated
(applied twice). Exactly-once effect means both are zero, and the order of
the sender's messages is kept.
"""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="module")
def fast_fleet(fleet):
    fleet.env.update(RELAY_HOST_TTL="2", RELAY_LEASE_TTL_MS="2000")
    return fleet


def test_kill_minus_nine_loses_and_duplicates_nothing(fast_fleet, client) -> None:
    first = fast_fleet.start("victim-host")
    client.deploy("server ledger { state { seen: [] }\n"
                  " receive fn add(i) { let t = clock()\n while clock() - t < 0.01 { }\n state.seen.push(i) }\n"
                  " receive fn all() { state.seen } }")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(s["owner"] == first for s in client.servers()):
        time.sleep(0.1)
    total = 150
    for i in range(total):
        client.send("ledger", "add", i)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill once part of the messages is applied, one in flight
        applied = (client.registry.load_checkpoint("ledger") or {}).get("seen", [])
        if len(applied) >= 20:
            break
        time.sleep(0.02)
    assert 20 <= len(applied) < total
    fast_fleet.workers[first].kill()  # SIGKILL: no cleanup, no ack
    fast_fleet.workers.pop(first).wait()
    second = fast_fleet.start("heir")
    seen: list = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = client.call("ledger", "all", timeout=30)
        if len(set(seen)) >= total:
            break
        time.sleep(0.3)
    lost = total - len(set(seen))
    duplicated = len(seen) - len(set(seen))
    info = {s["name"]: s for s in client.servers()}["ledger"]
    print(f"kill -9 failover: sent {total}, applied {len(seen)}, lost {lost}, duplicated {duplicated}, "
          f"owner {info['owner']}, restarts {info['restarts']}")
    assert (lost, duplicated) == (0, 0)
    assert seen == list(range(total))
    assert info["owner"] == second and info["restarts"] >= 1

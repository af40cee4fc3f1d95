"""One owner per server on every pool: 3 producers x 100 sends to one server end exact and in order."""

from __future__ import annotations

import threading
import time

import pytest

from .conftest import SEQ, deploy, record, settle

POOLS = {
    "default (prefork, -c cores)": [],
    "prefork -c 4": ["-P", "prefork", "-c", "4"],
    "solo": ["-P", "solo"],
    "threads -c 4": ["-P", "threads", "-c", "4"],
}


@pytest.mark.parametrize("pool", list(POOLS))
def test_three_producers_to_one_server(fleet, client, pool) -> None:
    fleet.start("w1", pool=POOLS[pool])
    deploy(client, SEQ.format(name="seq"))
    per_producer = 100

    def produce(p: int) -> None:
        c = fleet.client()
        for k in range(per_producer):
            c.send("seq", "add", f"p{p}", k)
        c.close()

    started = time.monotonic()
    threads = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    figures = settle(client, "seq", 3 * per_producer)
    record(f"pool {pool}", **figures, seconds=time.monotonic() - started)
    assert figures == {"sent": 300, "applied": 300, "lost": 0, "duplicated": 0, "order_violations": 0}


def test_eval_jobs_reach_servers_from_every_pool_child(fleet, client) -> None:
    fleet.start("w1", pool=["-P", "prefork", "-c", "3"])
    deploy(client, SEQ.format(name="seq"))
    results = [client.eval(f'seq.add("e", {k})', timeout=30) for k in range(30)]
    assert [r.error for r in results] == [None] * 30
    figures = settle(client, "seq", 30)
    record("eval jobs in prefork -c 3 calling one server", **figures)
    assert figures["applied"] == 30 and figures["duplicated"] == 0 and figures["order_violations"] == 0

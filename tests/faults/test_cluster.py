"""The fleet with its store on a local 3-master Redis Cluster (the broker stays a plain Redis, as kombu
has no Cluster transport): plain servers, a family and server-to-server sends through a kill -9 of a
worker, a SIGSTOP of a worker with garbage on its queues, and a restart of the master holding the fleet.

Every key of the fleet carries one hash tag (`{relay}`), so the fleet lives on the master serving that
slot; each case prints which master that is and how many keys the others hold."""

from __future__ import annotations

import shutil
import signal
import threading
import time

import pytest
import redis

from relay_workers.client import FleetUnreachable
from relay_workers.devfleet import LocalFleet, RedisClusterServers
from relay_workers.ledger import key
from relay_workers.store import is_cluster

from .conftest import FAST, SEQ, record, settle
from .test_families import FAMILY, assert_exact, produce, totals

FORWARD = """
server forward {
    state { n: 0 }
    receive fn add(p, k) { send(seqs["fwd"], "add", p, k)
        state.n += 1
        state.n }
}
"""


@pytest.fixture
def cluster(tmp_path):
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is not installed (.ci/test installs redis-server, which has it)")
    c = RedisClusterServers(tmp_path / "cluster", masters=3)
    yield c
    c.stop()


@pytest.fixture
def fleet(redis_server, cluster, tmp_path):
    """Broker and results on `redis_server`, the store on the Cluster; servers let go after 0.4 s idle."""
    logs = tmp_path / "logs"
    logs.mkdir()
    f = LocalFleet.on(redis_server.url, logs=logs, store=cluster.url, RELAY_IDLE_TIMEOUT="0.4", **FAST)
    yield f
    f.stop_all()


def placement(cluster: RedisClusterServers) -> dict:
    """Which master holds the fleet's keys, and how many keys each of the others holds."""
    home = cluster.node_serving(key("hosts"))
    others = [redis.Redis(port=n.port).dbsize() for n in cluster.nodes if n is not home]
    return {"masters": len(cluster.nodes), "fleet_on_port": home.port, "keys_on_other_masters": sum(others)}


def test_servers_a_family_and_forwarding_through_a_kill_9_on_a_cluster(fleet, client, cluster) -> None:
    assert is_cluster(fleet.env["RELAY_STORE_URL"])
    w1 = fleet.start("w1")
    fleet.start("w2")
    fleet.start_beat()
    client.deploy(SEQ.format(name="seq") + FAMILY + FORWARD)
    names = ["seq"] + [f"seqs[c{k}]" for k in range(10)]
    producers = [threading.Thread(target=produce, args=(fleet.client(), names, f"p{i}", 30, 0.04, i)) for i in range(2)]
    forwarder = threading.Thread(target=produce, args=(fleet.client(), ["forward"], "f", 60, 0.02))
    for t in [*producers, forwarder]:
        t.start()
    time.sleep(0.6)
    fleet.kill(w1)
    killed = time.monotonic()
    for t in [*producers, forwarder]:
        t.join()
    figures = totals(client, names, 60)
    forwarded = totals(client, ["seqs[fwd]"], 60)
    for k in ("sent", "applied", "lost", "duplicated", "order_violations"):
        figures[k] += forwarded[k]
    listed = {s["name"] for s in client.servers()}
    record("3-master Redis Cluster: 2 producers x 30 rounds to 11 servers + 60 forwarded, kill -9 of a worker",
           failover_s=time.monotonic() - killed, **placement(cluster), **figures)
    assert_exact(figures)
    assert {"seq", "forward", "seqs[]"} <= listed
    assert client.call("forward", "add", "g", 0) == 61


def test_a_paused_worker_and_garbage_on_its_queues_on_a_cluster(fleet, client, cluster) -> None:
    fleet.start("w1")
    w2 = fleet.start("w2")
    client.deploy(FAMILY)
    names = [f"seqs[s{k}]" for k in range(200)]
    broker = redis.Redis.from_url(fleet.env["RELAY_BROKER_URL"])
    producers = [threading.Thread(target=produce, args=(fleet.client(), names[i::4], f"p{i}", 3)) for i in range(4)]
    for t in producers:
        t.start()
    time.sleep(0.5)
    fleet.signal(w2, signal.SIGSTOP)
    for queue in ("relay.shard-0", "relay.shard-7", "relay.eval"):
        broker.lpush(queue, "not json {")
    time.sleep(6)
    fleet.signal(w2, signal.SIGCONT)
    for t in producers:
        t.join()
    figures = totals(client, names, 3, timeout=180)
    letters = client.dead_letters()
    record("3-master Redis Cluster: 4 producers x 150 sends to 200 family servers, a worker SIGSTOPped 6 s, "
           "3 garbage items", dead_letters=len(letters), **placement(cluster), **figures)
    assert_exact(figures)
    assert len(letters) == 3


def test_a_restart_of_the_master_holding_the_fleet(fleet, client, cluster) -> None:
    fleet.start("w1")
    fleet.start("w2")
    client.deploy(SEQ.format(name="seq"))
    home = cluster.node_serving(key("hosts"))
    retries = [0]

    def produce_through_the_outage() -> None:
        """80 numbered sends; one the store refuses (CLUSTERDOWN while the master is down, raised as
        FleetUnreachable) is sent again with the same id, as a user would: applied once."""
        producer = fleet.client()
        k = 0
        while k < 80:
            try:
                producer.send("seq", "add", "p", k, message_id=f"p-{k}")
                k += 1
                time.sleep(0.01)
            except FleetUnreachable:
                retries[0] += 1
                time.sleep(0.1)
        producer.close()

    producer = threading.Thread(target=produce_through_the_outage)
    producer.start()
    time.sleep(0.4)
    home.restart(down_for=2.0)
    cluster.wait_ready()
    restarted = time.monotonic()
    producer.join()
    figures = settle(client, "seq", 80, timeout=120)
    record("3-master Redis Cluster: the master holding the fleet down 2 s and restarted (appendonly) mid-stream",
           recovered_s=time.monotonic() - restarted, producer_retries=retries[0], **placement(cluster), **figures)
    assert_exact(figures)

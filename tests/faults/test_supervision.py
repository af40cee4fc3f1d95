"""Supervision with default settings and `celery -A relay_workers beat` running: failover under 3 s,
restart intensity, poison messages set aside, limits that end as Relay errors with the worker alive."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from relay_workers.devfleet import LocalFleet

from .conftest import SEQ, deploy, owner, record, settle, wait_until

# RELAY_SOAK=1: the kill rounds go on for RELAY_SOAK_SECONDS (default 600) instead of 5 rounds.
SOAK = os.environ.get("RELAY_SOAK") == "1"
SOAK_SECONDS = float(os.environ.get("RELAY_SOAK_SECONDS", "600"))


@pytest.fixture
def supervised(redis_server, tmp_path):
    logs = tmp_path / "supervised-logs"
    logs.mkdir()
    fleet = LocalFleet.on(redis_server.url, logs=logs)  # the default settings: heartbeat 1 s, lease 6 s, host TTL 8 s
    fleet.start_beat()
    yield fleet
    fleet.stop_all()


@pytest.fixture
def supervised_client(supervised):
    c = supervised.client()
    yield c
    c.close()


def info(client, name: str) -> dict:
    return next(s for s in client.servers() if s["name"] == name)


class Producers:
    """Producers sending add(p, k) in order; a failed send is retried with the same id (applied once)."""

    def __init__(self, fleet, count: int) -> None:
        self.sent = [0] * count
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(fleet, p), daemon=True) for p in range(count)]
        for t in self.threads:
            t.start()

    def run(self, fleet, p: int) -> None:
        client = fleet.client()
        while not self.done.is_set():
            k = self.sent[p]
            try:
                client.send("seq", "add", f"p{p}", k, message_id=f"p{p}-{k}")
                self.sent[p] += 1
            except Exception:  # noqa: BLE001 - the same id again
                time.sleep(0.05)
            time.sleep(0.02)
        client.close()

    def stop(self) -> int:
        self.done.set()
        for t in self.threads:
            t.join()
        return sum(self.sent)


def test_kill_minus_nine_rounds_with_restarts_under_the_same_name(supervised, supervised_client) -> None:
    client = supervised_client
    supervised.start("w1")
    supervised.start("w2")
    names = client.deploy(SEQ.format(name="seq"), max_restarts=100_000 if SOAK else None)
    wait_until(lambda: info(client, "seq")["status"] == "running", 30, "seq running")
    assert names == [("seq", 1)]
    producers = Producers(supervised, 3)
    failovers: list[float] = []
    rng = random.Random(int(os.environ.get("RELAY_SOAK_SEED", "7")))
    deadline = time.monotonic() + SOAK_SECONDS
    while (time.monotonic() < deadline) if SOAK else len(failovers) < 5:
        time.sleep(rng.uniform(5.5, 7.5))  # a random moment, past the crash-loop backoff window
        victim = owner(client, "seq")
        dead = info(client, "seq")["host"]
        supervised.kill(victim)
        killed = time.monotonic()
        applied = info(client, "seq")["applied"]  # the dead owner commits no more
        wait_until(lambda d=dead, a=applied: (i := info(client, "seq"))["host"] != d and i["applied"] > a, 30,
                   "seq applying messages again", interval=0.02)  # a commit by the new owner
        failovers.append(time.monotonic() - killed)
        supervised.start(victim.split("@")[0])  # a process manager restarts it under its name
    sent = producers.stop()
    figures = settle(client, "seq", sent, timeout=120)
    restarts = info(client, "seq")["restarts"]
    record(f"kill -9 x{len(failovers)} (default settings, beat running)", **figures, restarts=restarts,
           failover_s=" ".join(f"{f:.2f}" for f in failovers), worst_failover_s=max(failovers))
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert figures["applied"] == sent and restarts == len(failovers)
    assert max(failovers) < 3.0


def test_restart_intensity_exhausted_marks_failed_and_restart_brings_it_back(fleet, client) -> None:
    fleet.start("w1")
    fleet.start("w2")
    names = client.deploy(SEQ.format(name="seq"), max_restarts=2, restart_period=60)
    assert names == [("seq", 1)]
    wait_until(lambda: info(client, "seq")["status"] == "running", 30, "seq running")
    for k in range(10):
        client.call("seq", "add", "p", k)
    for round_ in range(3):  # each death is a restart when the next message finds its owner dead
        victim = owner(client, "seq")
        dead = info(client, "seq")["host"]
        fleet.kill(victim)
        fleet.start(victim.split("@")[0])
        client.send("seq", "add", "p", 10 + round_)
        if round_ < 2:
            wait_until(lambda d=dead: info(client, "seq")["host"] not in ("", d) and
                       info(client, "seq")["status"] == "running", 40, "seq restarted")
            time.sleep(5.5)  # past the crash-loop backoff window
    wait_until(lambda: info(client, "seq")["status"] == "failed", 30, "seq marked failed")
    failed = info(client, "seq")
    time.sleep(2)  # its message stays in its journal while it is failed
    assert info(client, "seq")["status"] == "failed" and info(client, "seq")["queued"] == 1
    client.restart("seq")
    wait_until(lambda: info(client, "seq")["status"] == "running", 30, "seq running after relay restart")
    figures = settle(client, "seq", 13)
    record("restart intensity 2 in 60 s exhausted", status=failed["status"], reason=failed["reason"], **figures)
    assert figures == {"sent": 13, "applied": 13, "lost": 0, "duplicated": 0, "order_violations": 0}


POISON = """
server {name} {{
    state {{ n: 0 }}
    receive fn hog() {{ let a = []
        while true {{ push(a, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" + str(len(a))) }} }}
    receive fn add() {{ state.n += 1
        state.n }}
}}
"""


class OomKiller:
    """What the kernel's OOM killer (or a cgroup limit) does: SIGKILL a worker past a memory size,
    and what a process manager does: start it again under its name."""

    def __init__(self, fleet: LocalFleet, limit_mib: int) -> None:
        self.fleet = fleet
        self.limit = limit_mib * 1024 * 1024
        self.kills = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def rss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def run(self) -> None:
        while not self.done.wait(0.05):
            for node, proc in list(self.fleet.workers.items()):
                if node != "beat" and self.rss(proc.pid) > self.limit:
                    self.fleet.kill(node)
                    self.kills += 1
                    self.fleet.start(node.split("@")[0], wait=False)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def test_a_poison_message_is_set_aside_after_three_attempts(fleet, client) -> None:
    fleet.start("w1")
    fleet.start("w2")
    deploy(client, POISON.format(name="victim"))
    killer = OomKiller(fleet, limit_mib=700)
    poison_id = client.send("victim", "hog")
    replies = [client.send("victim", "add") for _ in range(3)]
    wait_until(lambda: any(d["id"] == poison_id for d in client.dead_letters("victim")), 120, "the poison set aside")
    wait_until(lambda: info(client, "victim")["queued"] == 0, 60, "the messages after it")
    kills_then = killer.kills
    time.sleep(3)
    killer.stop()
    letter = next(d for d in client.dead_letters("victim") if d["id"] == poison_id)
    after = client.call("victim", "add", timeout=30)
    record("poison message (OOM-killed owner)", kills=kills_then, attempts=letter["attempts"],
           messages_after_it=len(replies), next_reply=after, kills_after=killer.kills - kills_then)
    assert letter["attempts"] == 3 and letter["handler"] == "hog" and kills_then == 3
    assert after == 4 and killer.kills == kills_then  # no crash loop
    replayed = client.replay(poison_id)  # an operator may send it again (here it would kill again: drop it)
    assert replayed != poison_id and not client.dead_letters("victim")


LIMITS = """
@llvm
fn spin(n) { let i = 0
    while true { i = i + n }
    i }

server limited {
    state { n: 0 }
    receive fn loop() { spin(1) }
    receive fn grab() { let a = []
        while true { push(a, array(5000000, len(a))) } }
    receive fn add() { state.n += 1
        state.n }
}
"""


def test_endless_compiled_loop_and_runaway_allocation_are_relay_errors(fleet, client) -> None:
    worker = fleet.start("w1", prefix=["prlimit", f"--as={4 * 1024 ** 3}"])
    deploy(client, LIMITS)
    client.deploy(LIMITS, time_limit=3)  # a hot upgrade that sets the server's message time limit
    started = time.monotonic()
    with pytest.raises(Exception) as looped:
        client.call("limited", "loop", timeout=30)
    loop_s = time.monotonic() - started
    with pytest.raises(Exception) as grabbed:
        client.call("limited", "grab", timeout=60)
    after = client.call("limited", "add", timeout=30)
    record("endless @llvm loop, runaway allocation", loop_error=str(looped.value).splitlines()[0],
           loop_s=loop_s, grab_error=str(grabbed.value).splitlines()[0], next_reply=after)
    assert "time limit of 3 s exceeded" in str(looped.value) and loop_s < 3 * 1.1 + 1
    assert "memory" in str(grabbed.value) and after == 1
    assert fleet.workers[worker].poll() is None and info(client, "limited")["restarts"] == 0


def test_a_worker_past_its_memory_threshold_hands_off_and_exits(fleet, client) -> None:
    big = fleet.start("big", RELAY_HOST_MAX_MEMORY_MIB="400")
    deploy(client, SEQ.format(name="seq") + """
let held = []
server hog {
    state { n: 0 }
    receive fn grow() { for i in 0..60 { push(held, array(1000000, i)) }
        state.n += 1
        len(held) }
}""")
    fleet.start("spare")
    for k in range(50):
        client.send("seq", "add", "p", k)
    assert client.call("hog", "grow", timeout=60) == 60  # about 480 MB, held in a global of the server
    for k in range(50, 100):
        client.send("seq", "add", "p", k)
    wait_until(lambda: fleet.workers[big].poll() is not None, 30, "the worker to exit")
    figures = settle(client, "seq", 100)
    hog = info(client, "hog")
    record("host past RELAY_HOST_MAX_MEMORY_MIB", exit_code=fleet.workers[big].returncode, **figures,
           hog_restarts=hog["restarts"], hog_owner=hog["owner"])
    assert "handing its servers off" in fleet.log(big)
    assert (figures["lost"], figures["duplicated"], figures["order_violations"]) == (0, 0, 0)
    assert hog["restarts"] == 0 and hog["status"] == "inactive"  # handed off with nothing waiting: let go
    assert client.call("hog", "grow", timeout=60) == 60  # its next message starts it on the live worker
    assert info(client, "hog")["owner"].startswith("spare@") and info(client, "hog")["restarts"] == 0


def test_a_message_restarts_a_server_whose_owner_died_within_the_restart_policy(redis_server) -> None:
    """Registry.activate on a server whose owner has no heartbeat: restarted at once on the live host (a
    restart counted, the dead owner's lease dropped, a failover event), unless it was restarted within its
    restart period: then it waits in `unowned` for the supervisor, which applies the restart policy."""
    import redis

    from relay_workers.ledger import key
    from relay_workers.registry import Registry

    r = redis.Redis.from_url(f"{redis_server.url}/2")
    registry = Registry(r, host_ttl=8, max_restarts=5, restart_period=60)
    registry.register("svc", "server svc { }", "<test>")  # no live host: left for the supervisor
    registry.register_host("live#1.a", "live", 1)
    registry.heartbeat("live#1.a")
    for restarted_before in (False, True):
        r.hset(key("server", "svc"), "owner", "gone#2.b")  # its owner died (never beat, or was reaped)
        r.sadd(key("owned", "gone#2.b"), "svc")
        r.set(key("lease", "svc"), "gone#2.b 7")
        if restarted_before:
            r.hset(key("server", "svc"), "owner", "gone#3.c")
            r.set(key("lease", "svc"), "gone#3.c 8")
        owner = registry.activate("svc")
        if not restarted_before:
            assert owner == "live#1.a" and registry.owner("svc") == "live#1.a"
            assert r.get(key("lease", "svc")) is None and not r.sismember(key("owned", "gone#2.b"), "svc")
            assert r.hget(key("server", "svc"), "restarts") == b"1" and r.zcard(key("restarts", "svc")) == 1
            event = r.xrange(key("events"))[-1][1]
            assert (event[b"kind"], event[b"from"], event[b"to"]) == (b"failover", b"gone#2.b", b"live#1.a")
            assert registry.wait_for_bell("live#1.a", 1) == ["svc"]
        else:  # restarted 0 s ago: the supervisor decides (backoff, or failed past max_restarts)
            assert owner is None and r.sismember(key("unowned"), "svc")
            assert registry.owner("svc") == "gone#3.c" and r.hget(key("server", "svc"), "restarts") == b"1"
    print("a message restarts a server whose owner died: at once; again within its restart period: by the supervisor")

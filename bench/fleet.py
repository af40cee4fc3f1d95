"""The fleet side by side with bare Celery, one run, same broker (a private redis-server).

Run: python bench/fleet.py [--calls N] [--sends N] [--programs N] [--recycle-mib M] [--instances N]
                           [--active N] [--only round-trips|compiled-cores|families|actives]
- round trips: RelayClient.call on a trivial handler against a bare Celery
  no-op task (`relay.ping`) sent and awaited the same way: throughput and
  p50/p99 latency, sequential, one producer;
- pipelined: N RelayClient.send to one server, then waiting until all are
  applied, against N bare `relay.ping` tasks sent at once, then every result
  awaited (best of 3, interleaved);
- the first run of an @llvm function on worker A (compiles) against its first
  run on worker B (loads A's object code from Redis) and a warm run;
- state size: the same trivial call (`state.n += 1`) on servers holding 10,
  100,000 and 1,000,000 entries in another state field (a message writes
  what it touched, not the whole state);
- cores: 4 servers with a CPU-heavy handler, 40 messages each, on 1 worker
  and then on 2 (each worker hosts interpreted servers on one core);
- compiled cores: servers whose handler spends its time in @llvm code (which
  runs without the GIL), on one worker: 1 server, then 2 at once;
- families: a family whose 10, then N, servers each got one message and
  went idle: what each worker costs while nothing happens (CPU, threads,
  store connections) and the store's commands/s, a first message to an
  inactive server, and calls to an active one, N against 10;
- active servers: N servers of a family active on one worker (RSS, threads),
  then a second worker and beat start, the first is killed (kill -9) and 32
  callers call a random 1,000 of them at once: when each answers again,
  counted from the kill, and each reply checked (lost 0, duplicated 0);
- compiled programs: a solo worker (its eval jobs run in its main process,
  beside its host) runs N distinct @llvm programs while one of its servers
  takes a send per 100 programs, with RELAY_HOST_MAX_MEMORY_MIB=M; restarted
  whenever it exits, as a process manager would: RSS, recycles, nothing lost.
The round-trip and pipelined rows run again with RabbitMQ as the broker when
one answers on localhost:5672 (guest/guest).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kombu
from bench_machine import describe

from relay_workers.devfleet import LocalFleet, RedisServer

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def timed_calls(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def row(label: str, samples: list[float]) -> str:
    return (f"{label:<34} {len(samples) / sum(samples):>10.0f} {statistics.median(samples) * 1e3:>9.2f} "
            f"{percentile(samples, 0.99) * 1e3:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--programs", type=int, default=2000)
    parser.add_argument("--recycle-mib", type=int, default=256)
    parser.add_argument("--instances", type=int, default=10_000, help="servers of one family in the families rows")
    parser.add_argument("--active", type=int, default=10_000, help="active servers on one worker in the kill row")
    parser.add_argument("--only", choices=["round-trips", "compiled-cores", "families", "actives"],
                        help="run these rows alone (round-trips: the Redis broker's round-trip and pipelined rows)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relay-fleet-bench-"))
    print(f"# fleet benchmark on {describe()}; workers with the default pool")
    if args.only == "compiled-cores":
        compiled_cores(work)
        return
    if args.only == "families":
        families(work, args.instances)
        return
    if args.only == "actives":
        actives(work, args.active)
        return
    for label, broker in (("Redis", None), ("RabbitMQ", RABBITMQ)):
        if broker is not None and args.only == "round-trips":
            return
        if broker is not None and not rabbitmq_answers():
            print(f"## {label} broker: skipped (none answers on localhost:5672)")
            continue
        server = RedisServer(work / label)
        fleet = LocalFleet.on(server.url, broker=broker, logs=work)
        try:
            run(fleet, label, args.calls, args.sends, everything=broker is None and args.only is None)
        finally:
            fleet.stop_all()
            server.stop()
    cores(work)
    compiled_cores(work)
    families(work, args.instances)
    actives(work, args.active)
    compiled_programs(work, args.programs, args.recycle_mib)


ACCOUNT = """
server account[id] {
    state { n: 0 }
    receive fn bump() { state.n += 1
        state.n }
}
"""
IDLE = 3.0  # RELAY_IDLE_TIMEOUT of the families rows (the default is 120 s)


def families(work: Path, instances: int, window: float = 5.0) -> None:
    """What servers cost while idle: two workers, a family whose first 10 servers, then all `instances`,
    each got one message and went idle (let go after IDLE s); per worker: CPU, threads and store
    connections while nothing happens, the store's commands/s; then a call that activates an inactive
    server, and calls to an active one, against the same with 10 servers."""
    server = RedisServer(work / "families")
    fleet = LocalFleet.on(server.url, logs=work, RELAY_IDLE_TIMEOUT=str(IDLE))
    try:
        nodes = [fleet.start("fa"), fleet.start("fb")]
        client = fleet.client()
        client.deploy(ACCOUNT)
        print(f"{'family servers, then idle':<34} {'CPU %/wkr':>10} {'threads':>8} {'conns':>6} {'cmds/s':>8} "
              f"{'first p50/p99 ms':>17} {'active p50 ms':>14}")
        figures = {}
        for count in (10, instances):
            names = [f"account[{k}]" for k in range(count)]
            for name in names:
                client.send(name, "bump")
            while client.registry.instances("account") < count or any(client.ledger.has_pending(names)):
                time.sleep(0.2)
            time.sleep(IDLE + 2.5)  # every server let go
            cpu, threads, conns, cmds = idle_costs(fleet, nodes, server.url, window)
            inactive = iter(names)
            first = timed_calls(lambda: client.call(next(inactive), "bump"), min(200, count))  # noqa: B023
            time.sleep(0.5)
            active = timed_calls(lambda: client.call("account[0]", "bump"), 300)
            figures[count] = statistics.median(active)
            print(f"{f'{count:,} servers':<34} {cpu:>10.2f} {threads:>8.0f} {conns:>6.0f} {cmds:>8.0f} "
                  f"{statistics.median(first) * 1e3:>8.2f}/{percentile(first, 0.99) * 1e3:<8.2f} "
                  f"{statistics.median(active) * 1e3:>14.2f}")
            time.sleep(IDLE + 2.5)
        print(f"active call p50, {instances:,} / 10 servers: {figures[instances] / figures[10]:.2f}x (target <= 1.2x)")
        listing = timed_calls(lambda: client.servers_page(family="account", status="inactive", limit=50), 5)
        command = [sys.executable, "-m", "relay_workers.cli", "servers", "--family", "account", "--status", "inactive"]
        typed = timed_calls(lambda: subprocess.run(command, env=fleet.env, capture_output=True, check=True), 5)
        print(f"a page of `relay servers --family account --status inactive` among {instances:,}: median "
              f"{statistics.median(listing):.2f} s in process, {statistics.median(typed):.2f} s as a command "
              "(Python's start included; target < 1 s)")
        client.close()
    finally:
        fleet.stop_all()
        server.stop()


def actives(work: Path, count: int, sample: int = 1000, callers: int = 32) -> None:
    """`count` servers of a family active on one worker: its RSS and threads; then a second worker and beat
    start, the first is killed with kill -9 and `callers` threads call a random `sample` of the servers at
    once: when each answered again, from the kill. Each server got one send before, so each call's reply
    must be 2 (1: the send was lost; 3: applied twice)."""
    server = RedisServer(work / "actives")
    fleet = LocalFleet.on(server.url, logs=work, RELAY_IDLE_TIMEOUT="3600")
    try:
        first = fleet.start("aa")
        pid = fleet.workers[first].pid
        client = fleet.client()
        client.deploy(ACCOUNT)
        idle_rss = rss_mib(pid)
        names = [f"account[{k}]" for k in range(count)]
        started = time.monotonic()
        for name in names:
            client.send(name, "bump")
        while client.registry.instances("account") < count or any(client.ledger.has_pending(names)):
            time.sleep(0.2)
        took = time.monotonic() - started
        threads = int(Path(f"/proc/{pid}/status").read_text().split("Threads:")[1].split()[0])
        print(f"{count:,} active servers on one worker: RSS {rss_mib(pid):.0f} MiB (idle worker: {idle_rss:.0f} MiB; "
              f"target < 1024), {threads} threads; activated in {took:.1f} s")
        fleet.start("ab")
        fleet.start_beat()
        chosen = random.Random(7).sample(names, min(sample, count))
        clients = [fleet.client() for _ in range(callers)]
        answered: list[float] = []
        replies: list[object] = []
        fleet.kill(first)
        killed = time.monotonic()

        def call(k: int) -> None:
            for name in chosen[k::callers]:
                replies.append(clients[k].call(name, "bump", timeout=60))
                answered.append(time.monotonic() - killed)

        with ThreadPoolExecutor(callers) as pool:
            list(pool.map(call, range(callers)))
        ranked = sorted(answered)
        print("answered (s from the kill), deciles:", [round(ranked[k * (len(ranked) - 1) // 10], 2) for k in range(11)])
        lost, duplicated = sum(r == 1 for r in replies), sum(isinstance(r, int) and r > 2 for r in replies)
        print(f"after kill -9 of that worker: {len(replies)} of a random {len(chosen)} answered again, p50 "
              f"{statistics.median(answered):.2f} s, p99 {percentile(answered, 0.99):.2f} s, last "
              f"{max(answered):.2f} s from the kill (target p99 <= 3 s); lost {lost}, duplicated {duplicated}")
        for c in [client, *clients]:
            c.close()
    finally:
        fleet.stop_all()
        server.stop()


def idle_costs(fleet: LocalFleet, nodes: list[str], url: str, window: float) -> tuple[float, float, float, float]:
    """Over `window` s of nothing: CPU % and threads of each worker's main process (averaged over the
    workers), the hosts' store connections per worker, and the store's commands per second."""
    import redis

    store = redis.Redis.from_url(url)
    pids = [fleet.workers[n].pid for n in nodes]
    ticks = os.sysconf("SC_CLK_TCK")
    before = [cpu_ticks(p) for p in pids]
    commands = int(store.info("stats")["total_commands_processed"])
    time.sleep(window)
    cpu = sum(cpu_ticks(p) - b for p, b in zip(pids, before)) / ticks / window / len(pids) * 100
    cmds = (int(store.info("stats")["total_commands_processed"]) - commands - 2) / window
    threads = sum(int(Path(f"/proc/{p}/status").read_text().split("Threads:")[1].split()[0]) for p in pids) / len(pids)
    conns = sum(1 for c in store.client_list() if c.get("name", "").startswith("relay-host:")) / len(pids)
    store.close()
    return cpu, threads, conns, cmds


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def rabbitmq_answers() -> bool:
    """True when RabbitMQ answers on localhost:5672; this benchmark's queues are emptied then."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    with kombu.Connection(RABBITMQ, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in ("relay.eval", "relay.echo", "only-wa", "only-wb"):
            channel.queue_delete(queue)
    return True


def run(fleet: LocalFleet, label: str, calls: int, sends: int, everything: bool) -> None:
    fleet.start("wa", "relay.*,only-wa")
    client = fleet.client()
    client.deploy("server echo { receive fn hi(x) { x } }")
    while not all(s["owner"] for s in client.servers()):
        time.sleep(0.05)
    for _ in range(20):  # warm both paths
        client.call("echo", "hi", 1)
        client.app.send_task("relay.ping", queue="only-wa").get(timeout=30)
    print(f"## {label} broker: {calls} sequential round trips, then {sends} pipelined")
    print(f"{'round trip':<34} {'per s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    bare = timed_calls(lambda: client.app.send_task("relay.ping", queue="only-wa").get(timeout=30), calls)
    relay = timed_calls(lambda: client.call("echo", "hi", 1), calls)
    print(row("bare Celery no-op (relay.ping)", bare))
    print(row("RelayClient.call (trivial handler)", relay))
    print(f"throughput ratio relay/bare: {sum(bare) / sum(relay):.2f}x; "
          f"p50 overhead {(statistics.median(relay) - statistics.median(bare)) * 1e3:.2f} ms")
    pipelined(client, sends)
    if everything:
        first_runs(fleet, client)
        state_size(client, calls)
    client.close()


def pipelined(client, sends: int) -> None:
    """N messages sent at once, then all awaited: bare Celery tasks against Relay sends to one server."""

    def bare() -> None:
        results = [client.app.send_task("relay.ping", queue="only-wa") for _ in range(sends)]
        for result in results:
            result.get(timeout=120)

    def relay() -> None:
        goal = client.ledger.applied_count("echo") + sends
        for k in range(sends):
            client.send("echo", "hi", k)
        while client.ledger.applied_count("echo") < goal:
            time.sleep(0.005)

    best = {bare: float("inf"), relay: float("inf")}
    for _ in range(3):
        for fn in best:
            start = time.perf_counter()
            fn()
            best[fn] = min(best[fn], time.perf_counter() - start)
    print(f"{f'pipelined, {sends} messages':<34} {'per s':>10} {'seconds':>9}")
    print(f"{'bare Celery no-ops, then results':<34} {sends / best[bare]:>10.0f} {best[bare]:>9.2f}")
    print(f"{'RelayClient.send, then applied':<34} {sends / best[relay]:>10.0f} {best[relay]:>9.2f}")
    print(f"pipelined ratio relay/bare: {best[bare] / best[relay]:.2f}x")


def first_runs(fleet: LocalFleet, client) -> None:
    fleet.start("wb", "relay.*,only-wb")
    source = "@llvm\nfn tri(n) { let s = 0\n for i in 0..n { s += i * 3 }\n s }\ntri(1000)"

    def eval_on(queue: str) -> dict:
        return client.app.send_task("relay.eval", args=[source], queue=queue).get(timeout=60)

    first_a = eval_on("only-wa")
    warm_a = eval_on("only-wa")
    first_b = eval_on("only-wb")
    print(f"{'@llvm first run':<34} {'job ms':>10} {'compiled':>9} {'loaded':>9}")
    for label, r in (("worker A, first run", first_a), ("worker A, warm", warm_a), ("worker B, first run", first_b)):
        t = r["timings"]
        print(f"{label:<34} {t['seconds'] * 1e3:>10.2f} {t['compiled']:>9} {t['loaded_from_store']:>9}")
    print(f"worker B's first run is {(first_b['timings']['seconds'] - warm_a['timings']['seconds']) * 1e3:.2f} ms "
          "slower than a warm run")


HEAVY = """
server {name} {{
    state {{ n: 0 }}
    receive fn work(k) {{ let s = 0
        for i in 0..200000 {{ s += i % 7 }}
        state.n += 1
        s }}
}}
"""


def cores(work: Path, messages: int = 40) -> None:
    """Throughput of CPU-heavy handlers on 4 servers with 1 worker, then 2 (a fresh fleet each)."""
    print(f"{'4 CPU-heavy servers, ' + str(messages) + ' messages each':<34} {'msgs/s':>10} {'seconds':>9}")
    rates = {}
    for workers in (1, 2):
        server = RedisServer(work / f"cores-{workers}")
        fleet = LocalFleet.on(server.url, logs=work)
        try:
            for w in range(workers):
                fleet.start(f"c{workers}{w}")
            client = fleet.client()
            names = [f"heavy{i}" for i in range(4)]
            client.deploy("".join(HEAVY.format(name=n) for n in names))
            while not all(s["status"] == "running" for s in client.servers()):
                time.sleep(0.05)
            for n in names:
                client.call(n, "work", 0)  # loaded and warm
            start = time.perf_counter()
            for k in range(messages):
                for n in names:
                    client.send(n, "work", k)
            while sum(client.ledger.applied_count(n) for n in names) < len(names) * (messages + 1):
                time.sleep(0.05)  # a light poll: the workers need both cores
            seconds = time.perf_counter() - start
            rates[workers] = len(names) * messages / seconds
            print(f"{f'{workers} worker(s)':<34} {rates[workers]:>10.1f} {seconds:>9.2f}")
            client.close()
        finally:
            fleet.stop_all()
            server.stop()
    print(f"2-core scaling: {rates[2] / rates[1]:.2f}x")


BURNER = """
server {name} {{
    @llvm
    receive fn work(n: number) {{
        let s = 0
        for i in 0..n {{ s = s + i % 3 }}
        s
    }}
}}
"""


def compiled_cores(work: Path, messages: int = 12, iterations: int = 20_000_000) -> None:
    """Throughput of servers whose handler is compiled code, all on one worker: 1 server, then 2
    (compiled code lets go of the GIL, so one worker's servers use its cores); one fresh fleet."""
    print(f"{'compiled handlers on 1 worker':<34} {'msgs/s':>10} {'seconds':>9}")
    server = RedisServer(work / "compiled-cores")
    fleet = LocalFleet.on(server.url, logs=work)
    rates = {}
    try:
        fleet.start("cc")
        client = fleet.client()
        names = ["burner0", "burner1"]
        client.deploy("".join(BURNER.format(name=n) for n in names), time_limit=600)
        while not all(s["status"] == "running" for s in client.servers()):
            time.sleep(0.05)
        for n in names:
            client.call(n, "work", 1, timeout=120)  # compiled and warm
        for count in (1, 2):
            used = names[:count]
            before = {n: client.ledger.applied_count(n) for n in used}
            start = time.perf_counter()
            for _ in range(messages):
                for n in used:
                    client.send(n, "work", iterations)
            while any(client.ledger.applied_count(n) - before[n] < messages for n in used):
                time.sleep(0.05)
            seconds = time.perf_counter() - start
            rates[count] = count * messages / seconds
            print(f"{f'{count} server(s), {messages} messages each':<34} {rates[count]:>10.2f} {seconds:>9.2f}")
        client.close()
    finally:
        fleet.stop_all()
        server.stop()
    print(f"compiled handlers, 2 servers / 1 on one worker: {rates[2] / rates[1]:.2f}x (target >= 1.8x)")


STATEFUL = """
server {name} {{
    state {{ n: 0, m: {{}} }}
    receive fn fill(count) {{ for i in 0..count {{ state.m[str(i)] = i }}
        len(keys(state.m)) }}
    receive fn bump() {{ state.n += 1
        state.n }}
}}
"""


def state_size(client, calls: int) -> None:
    sizes = (10, 100_000, 1_000_000)
    for size in sizes:
        client.deploy(STATEFUL.format(name=f"s{size}"))
    while not all(s["status"] == "running" for s in client.servers()):
        time.sleep(0.05)
    print(f"{'trivial call, state size':<34} {'per s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    p50 = {}
    for size in sizes:
        name = f"s{size}"
        assert client.call(name, "fill", size, timeout=300) == size
        for _ in range(20):
            client.call(name, "bump")
        samples = timed_calls(lambda n=name: client.call(n, "bump"), calls)
        p50[size] = statistics.median(samples)
        print(row(f"{size:,} entries in state.m", samples))
    print(f"p50 ratio 100,000 / 10 entries: {p50[100_000] / p50[10]:.2f}x; "
          f"1,000,000 / 10: {p50[1_000_000] / p50[10]:.2f}x")


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


class Keeper:
    """A process manager for one worker: starts it again whenever it exits, and samples its RSS."""

    def __init__(self, fleet: LocalFleet, name: str, start: Callable[[], str]) -> None:
        self.fleet, self.name, self.start = fleet, name, start
        self.node = start()
        self.recycles = 0
        self.peak = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def rss(self) -> float:
        return rss_mib(self.fleet.workers[self.node].pid)

    def _run(self) -> None:
        while not self.done.wait(0.05):
            if self.fleet.workers[self.node].poll() is not None:
                self.recycles += 1
                self.fleet.workers.pop(self.node)
                self.node = self.start()
            self.peak = max(self.peak, self.rss())

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


TALLY = """
server tally {
    state { n: 0, last: -1, gaps: 0 }
    receive fn add(k) { if k != state.last + 1 { state.gaps += 1 }
        state.last = k
        state.n += 1 }
    receive fn stats() { [state.n, state.gaps] }
}
"""


def compiled_programs(work: Path, programs: int, recycle_mib: int, chunk: int = 100) -> None:
    """A solo worker compiles `programs` distinct @llvm programs (eval jobs in its main process, beside its
    host and a server), recycled past `recycle_mib` and restarted: RSS stays bounded, nothing is lost."""
    server = RedisServer(work / "programs")
    fleet = LocalFleet.on(server.url, logs=work)
    try:
        keeper = Keeper(fleet, "jit", lambda: fleet.start("jit", pool=["-P", "solo"],
                                                          RELAY_HOST_MAX_MEMORY_MIB=str(recycle_mib)))
        client = fleet.client()
        client.deploy(TALLY)
        while client.call("tally", "stats") != [0, 0]:
            time.sleep(0.05)
        base = keeper.rss()
        wrong = 0
        samples = []  # (programs done, RSS MiB) while the first incarnation lives
        start = time.perf_counter()
        for first in range(0, programs, chunk):
            jobs = [(i, client.app.send_task("relay.eval", args=[f"@llvm\nfn f{i}(x) {{ x * {i} + 1 }}\nf{i}({i})"],
                                             queue="relay.eval"))
                    for i in range(first, min(programs, first + chunk))]
            wrong += sum(job.get(timeout=300)["value"] != i * i + 1 for i, job in jobs)
            client.send("tally", "add", first // chunk)
            if keeper.recycles == 0:
                samples.append((first + len(jobs), keeper.rss()))
        seconds = time.perf_counter() - start
        sent = (programs + chunk - 1) // chunk
        while client.call("tally", "stats", timeout=60)[0] < sent and time.perf_counter() - start < seconds + 60:
            time.sleep(0.1)
        applied, gaps = client.call("tally", "stats")
        keeper.stop()
        client.close()
    finally:
        fleet.stop_all()
        server.stop()
    (n0, r0), (n1, r1) = samples[0], samples[-1]
    per_1000 = (r1 - r0) / max(1, n1 - n0) * 1000
    print(f"## {programs} distinct @llvm programs on one solo worker, RELAY_HOST_MAX_MEMORY_MIB={recycle_mib}")
    print(f"RSS at start {base:.0f} MiB; growth {per_1000:.0f} MiB per 1,000 programs before the first recycle "
          f"(without recycling: about {base + per_1000 * programs / 1000:.0f} MiB after {programs})")
    print(f"peak RSS {keeper.peak:.0f} MiB; recycled {keeper.recycles} times; {programs / seconds:.0f} programs/s")
    print(f"nothing lost: {programs - wrong}/{programs} programs answered right; tally applied {int(applied)}/{sent} "
          f"sends, gaps (lost, repeated or out of order) {int(gaps)}")


if __name__ == "__main__":
    main()

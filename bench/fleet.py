"""The fleet side by side with bare Celery, one run, same broker (a private redis-server).

Run: python bench/fleet.py [--calls N]
- round trips: RelayClient.call on a trivial handler against a bare Celery
  no-op task (`relay.ping`) sent and awaited the same way: throughput and
  p50/p99 latency, sequential, one producer;
- the first run of an @llvm function on worker A (compiles) against its first
  run on worker B (loads A's object code from Redis) and a warm run;
- state size: the same trivial call (`state.n += 1`) on servers holding 10,
  100,000 and 1,000,000 entries in another state field (a message writes
  what it touched, not the whole state);
- cores: 4 servers with a CPU-heavy handler, 40 messages each, on 1 worker
  and then on 2 (each worker hosts its servers on one core).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_machine import describe

from relay_workers.devfleet import Fleet, RedisServer


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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relay-fleet-bench-"))
    server = RedisServer(work)
    fleet = Fleet.on(server.url, logs=work)
    try:
        run(fleet, args.calls)
    finally:
        fleet.stop_all()
        server.stop()
    cores(work)


def run(fleet: Fleet, calls: int) -> None:
    fleet.start("wa", "relay.*,only-wa")
    client = fleet.client()
    client.deploy("server echo { receive fn hi(x) { x } }")
    while not all(s["owner"] for s in client.servers()):
        time.sleep(0.05)
    for _ in range(20):  # warm both paths
        client.call("echo", "hi", 1)
        client.app.send_task("relay.ping", queue="only-wa").get(timeout=30)
    print(f"# fleet benchmark on {describe()}; Redis broker, workers with the default pool, "
          f"{calls} sequential round trips")
    print(f"{'round trip':<34} {'per s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    bare = timed_calls(lambda: client.app.send_task("relay.ping", queue="only-wa").get(timeout=30), calls)
    relay = timed_calls(lambda: client.call("echo", "hi", 1), calls)
    print(row("bare Celery no-op (relay.ping)", bare))
    print(row("RelayClient.call (trivial handler)", relay))
    print(f"throughput ratio relay/bare: {sum(bare) / sum(relay):.2f}x; "
          f"p50 overhead {(statistics.median(relay) - statistics.median(bare)) * 1e3:.2f} ms")

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
    state_size(client, calls)
    client.close()


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
        fleet = Fleet.on(server.url, logs=work)
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
            while sum(s["applied"] for s in client.servers()) < len(names) * (messages + 1):
                time.sleep(0.01)
            seconds = time.perf_counter() - start
            rates[workers] = len(names) * messages / seconds
            print(f"{f'{workers} worker(s)':<34} {rates[workers]:>10.1f} {seconds:>9.2f}")
            client.close()
        finally:
            fleet.stop_all()
            server.stop()
    print(f"2-core scaling: {rates[2] / rates[1]:.2f}x")


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


if __name__ == "__main__":
    main()

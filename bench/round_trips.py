"""Redis commands per Relay message, counted with MONITOR on a private redis-server (broker, results, store).

Run: python bench/round_trips.py [--sends N]
- one sequential `RelayClient.call` at a time, then N pipelined `RelayClient.send`s waited for together;
- commands are split by side: the producer (this process's connections) and the fleet (the worker);
  a Lua script (EVALSHA) or a pipeline is one round trip however many commands it runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import redis

from relay_workers.devfleet import LocalFleet, RedisServer


def local_ports() -> set[int]:
    """The local TCP ports of this process's sockets (Linux)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[1].split(":")[1], 16))
    return ports


class Monitor:
    """Every command the server runs while active, as (client port, db, command name); port 0: run by a script."""

    def __init__(self, url: str) -> None:
        self.seen: list[tuple[int, int, str]] = []
        self.active = False
        self.conn = redis.Redis.from_url(url)
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(5)

    def _run(self) -> None:
        with self.conn.monitor() as m:
            self.ready.set()
            try:
                for event in m.listen():
                    if self.active:
                        name = event["command"].split(" ", 1)[0].upper().strip('"')
                        self.seen.append((int(event.get("client_port") or 0), int(event.get("db") or 0), name))
            except redis.ConnectionError:
                pass  # the benchmark is over and its server stopped: nothing more to watch

    def count(self, action, n: int, label: str) -> None:
        self.seen.clear()
        self.active = True
        action()
        time.sleep(0.3)  # the monitor's stream catches up
        self.active = False
        mine = local_ports()
        sides: dict[str, Counter[str]] = {"producer": Counter(), "fleet": Counter(), "in scripts": Counter()}
        for port, db, name in self.seen:
            side = "in scripts" if port == 0 else "producer" if port in mine else "fleet"
            sides[side][f"db{db} {name}"] += 1
        print(f"## {label}: commands per message")
        for side, counts in sides.items():
            total = sum(counts.values()) / n
            detail = ", ".join(f"{k} {v / n:.2f}" for k, v in counts.most_common() if v / n >= 0.05)
            print(f"{side:<10} {total:6.2f}  ({detail})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sends", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relay-round-trips-"))
    server = RedisServer(work)
    fleet = LocalFleet.on(server.url, logs=work)
    try:
        fleet.start("w1")
        client = fleet.client()
        client.deploy("server echo { state { n: 0 }\n receive fn hi(x) { state.n += 1\n x } }")
        for _ in range(20):
            client.call("echo", "hi", 1)
        monitor = Monitor(server.url)

        def calls() -> None:
            for k in range(args.calls):
                client.call("echo", "hi", k)

        def sends() -> None:
            base = client.ledger.applied_count("echo")
            for k in range(args.sends):
                client.send("echo", "hi", k)
            while client.ledger.applied_count("echo") < base + args.sends:
                time.sleep(0.01)

        monitor.count(calls, args.calls, f"{args.calls} sequential calls")
        monitor.count(sends, args.sends, f"{args.sends} pipelined sends")
        client.close()
    finally:
        fleet.stop_all()
        server.stop()


if __name__ == "__main__":
    main()

"""The fault-injection suite: a real redis-server (appendonly) and real worker processes per test.

Workers are started with the command users type (`celery -A relay_workers
worker -Q 'relay.*'`, no pool flag) unless a case is about a pool. Timings
are shortened so that failover happens within seconds: lease 2 s, host TTL
3 s, heartbeat 0.5 s. Every case records its figures (sent, applied, lost,
duplicated, order, failover time); they are printed as one table at the end.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest

from conftest import eventually
from relay_workers.devfleet import LocalFleet, RedisServer

FAST = {"RELAY_LEASE_TTL": "2", "RELAY_HOST_TTL": "3", "RELAY_HEARTBEAT": "0.5"}
FIGURES: list[str] = []

# A server that checks exactly-once and per-producer order itself, in state of constant size: each
# message add(p, k) of producer p must come right after p's previous one (k = previous + 1); a message
# seen again counts as duplicated, a gap as an order violation.
SEQ = """
server {name} {{
    state {{ n: 0, dup: 0, gap: 0, last: {{}} }}
    receive fn add(p, k) {{
        let prev = state.last[p] ?? -1
        if k <= prev {{ state.dup += 1 }} else {{
            if k != prev + 1 {{ state.gap += 1 }}
            state.last[p] = k
        }}
        state.n += 1
        state.n
    }}
    receive fn stats() {{ let next = 0
        for p in keys(state.last) {{ next += state.last[p] + 1 }}
        [state.n, state.dup, state.gap, next] }}
}}
"""


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/test installs it with apt)")
    server = RedisServer(tmp_path, appendonly=True)
    yield server
    server.stop()


@pytest.fixture
def fleet(redis_server, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    f = LocalFleet.on(redis_server.url, logs=logs, **FAST)
    yield f
    f.stop_all()


@pytest.fixture
def client(fleet):
    c = fleet.client()
    yield c
    c.close()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Seconds until predicate() is true; fails the test after `timeout` seconds."""
    start = time.monotonic()
    eventually(predicate, timeout, what, interval)
    return time.monotonic() - start


def deploy(client, source: str, timeout: float = 30) -> None:
    names = [name for name, _version in client.deploy(source)]
    wait_until(lambda: all(s["status"] in ("running", "family") for s in client.servers() if s["name"] in names), timeout,
               f"{', '.join(names)} running")


def owner(client, name: str) -> str:
    return next(s["owner"] for s in client.servers() if s["name"] == name)


def drained(client, name: str) -> bool:
    return next(s["queued"] for s in client.servers() if s["name"] == name) == 0


def settle(client, name: str, sent: int, timeout: float = 60) -> dict:
    """Waits until the server applied every message it will apply; returns its figures. Producers number
    their messages 0, 1, ...: lost = sent - (highest k + 1, summed over producers) when nothing has a gap."""
    wait_until(lambda: drained(client, name) and client.call(name, "stats", timeout=5)[3] >= sent, timeout,
               f"{name} to apply {sent} messages")
    n, dup, gap, reached = (int(x) for x in client.call(name, "stats"))
    return {"sent": sent, "applied": n, "lost": sent - (n - dup), "duplicated": dup, "order_violations": gap}


def record(case: str, **figures: object) -> None:
    line = f"{case}: " + ", ".join(f"{k} {v if not isinstance(v, float) else round(v, 2)}" for k, v in figures.items())
    FIGURES.append(line)
    print(line)


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)

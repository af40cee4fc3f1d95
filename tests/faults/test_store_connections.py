"""The store's client pool: bounded, and its idle connections closed without racing the threads using it
(relay_workers.store.close_idle, run when a host lets servers go)."""

from __future__ import annotations

import threading
import time

import redis

from relay_workers.store import close_idle, connect

from .conftest import record


def named(r: redis.Redis, name: str) -> int:
    return sum(1 for c in r.client_list() if c.get("name") == name)


def test_closing_idle_connections_while_threads_use_the_pool(redis_server) -> None:
    url = f"{redis_server.url}/2"
    client = connect(url, name="pool-under-test")
    watcher = redis.Redis.from_url(url)
    errors: list[BaseException] = []
    commands = [0]
    stop = threading.Event()

    def work(k: int) -> None:
        while not stop.is_set():
            try:
                client.incr(f"n{k}")
                client.blpop([f"nothing{k}"], timeout=0.01)
                commands[0] += 2
            except BaseException as exc:  # noqa: BLE001 - counted: there must be none
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    closes = 0
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        close_idle(client)
        closes += 1
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join()
    busy = named(watcher, "pool-under-test")
    close_idle(client)
    after = named(watcher, "pool-under-test")
    record("closes of idle connections for 2 s under 16 threads", closes=closes, commands=commands[0], errors=len(errors),
           connections_busy=busy, connections_after=after)
    assert errors == [] and commands[0] > 200
    assert busy >= 2 and after == 0
    assert client.get("n0") is not None  # reconnects when next used
    assert named(watcher, "pool-under-test") == 1

"""Flower watches the fleet: its API lists the workers and the relay tasks, server messages included."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from conftest import eventually
from relay_workers.devfleet import LocalFleet, RedisServer, free_port


@pytest.fixture
def watched(tmp_path):
    server = RedisServer(tmp_path / "redis")
    fleet = LocalFleet.on(server.url, logs=tmp_path)
    port = free_port()
    fleet.start("w1")
    fleet.start_process("flower", ["celery", "-A", "relay_workers", "flower", f"--port={port}", "--address=127.0.0.1"],
                        FLOWER_UNAUTHENTICATED_API="true")
    yield fleet, f"http://127.0.0.1:{port}"
    fleet.stop_all()
    server.stop()


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_flower_lists_workers_and_relay_tasks(watched) -> None:
    fleet, flower = watched
    eventually(lambda: urllib.request.urlopen(f"{flower}/healthcheck"), 30, "Flower")
    client = fleet.client()
    client.deploy("server counter { state { n: 0 }\n receive fn add(k) { state.n += k\n state.n } }")
    eventually(lambda: all(s["status"] == "running" for s in client.servers()), 30, "counter running")
    time.sleep(1)  # Flower subscribes to the events
    message_id = client.send("counter", "add", 5)
    assert client.call("counter", "add", 2) == 7
    assert client.eval("counter.add(1)").value == 8
    client.close()
    workers = eventually(lambda: get(f"{flower}/api/workers?refresh=1"), 30, "Flower's workers", 0.3)
    assert "w1@relay-test" in workers and workers["w1@relay-test"].get("stats"), workers
    tasks = eventually(lambda: (t := get(f"{flower}/api/tasks")) and message_id in t and
                       sum(v["name"] == "relay.eval" for v in t.values()) and t, 30, "the relay tasks in Flower", 0.3)
    shown = tasks[message_id]
    print({k: (v["name"], v["state"], v.get("args")) for k, v in tasks.items()})
    assert (shown["name"], shown["state"], shown["args"]) == ("relay.deliver", "SUCCESS", "counter.add(5)")
    assert "Inspect method" not in (fleet.logs / "flower.log").read_text()

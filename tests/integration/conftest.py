"""Real parts for the fleet tests: a redis-server on a free port and `celery worker` processes.

Nothing is faked: the workers are started as users start them
(`celery -A relay_workers worker -Q 'relay.*'`), against a real Redis.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (.ci/test installs it with apt)")
    port = free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--maxmemory-policy", "noeviction", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


class Fleet:
    """Worker processes sharing one broker and store; stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.workers: dict[str, subprocess.Popen] = {}

    def start(self, name: str, queues: str = "relay.*", wait: bool = True) -> str:
        node = f"{name}@relay-test"
        log = open(self.logs / f"{name}.log", "w")
        self.workers[node] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "relay_workers", "worker", "-Q", queues, "--pool", "solo",
             "-n", node, "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_hosting(node)
        return node

    def wait_hosting(self, node: str, timeout: float = 30) -> None:
        r = redis.Redis.from_url(self.env["RELAY_STORE_URL"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if r.hget("relay:hosts", node):
                return
            if self.workers[node].poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"worker {node} did not start:\n{(self.logs / (node.split('@')[0] + '.log')).read_text()}")

    def stop(self, node: str) -> None:
        proc = self.workers.pop(node)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for node in list(self.workers):
            self.stop(node)


RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
TEST_QUEUES = ["relay.eval", "relay.*", "only-w1", "only-w2"] + [
    f"relay.{n}" for n in ("counter", "journal", "ping", "pong", "upgraded", "sturdy", "tally", "ledger")]


def rabbitmq_broker() -> str:
    """The RabbitMQ broker on localhost:5672, emptied of this suite's queues; skips when none answers."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        pytest.skip("no RabbitMQ broker answers on localhost:5672")
    import kombu
    with kombu.Connection(RABBITMQ, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in TEST_QUEUES:
            channel.queue_delete(queue)
    return RABBITMQ


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def fleet(request, redis_url, tmp_path_factory):
    """Workers on a Redis broker, then the same tests on RabbitMQ (results and state stay in Redis)."""
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    broker = f"{redis_url}/0" if request.param == "redis" else rabbitmq_broker()
    env = dict(os.environ, RELAY_BROKER_URL=broker, RELAY_RESULT_BACKEND=f"{redis_url}/1",
               RELAY_STORE_URL=f"{redis_url}/2", RELAY_CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
               PYTHONPATH=str(ROOT))
    f = Fleet(env, tmp_path_factory.mktemp("logs"))
    yield f
    f.stop_all()


@pytest.fixture
def client(fleet):
    from relay_workers import RelayClient
    c = RelayClient(fleet.env["RELAY_BROKER_URL"], fleet.env["RELAY_RESULT_BACKEND"], fleet.env["RELAY_STORE_URL"])
    yield c
    c.close()

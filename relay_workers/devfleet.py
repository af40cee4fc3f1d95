"""A fleet on this machine, for tests and benchmarks: a private redis-server and `celery worker`s.

The workers are started exactly as users start them
(`celery -A relay_workers worker -Q 'relay.*' --pool solo -n NAME@relay-test`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on a free port, keeping nothing on disk; `maxmemory-policy noeviction` as a broker needs."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server; .ci/test does it)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--maxmemory-policy", "noeviction", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Fleet:
    """Worker processes sharing one broker and store."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.workers: dict[str, subprocess.Popen] = {}

    @classmethod
    def on(cls, redis_url: str, broker: str | None = None, logs: Path | None = None) -> Fleet:
        env = dict(os.environ, RELAY_BROKER_URL=broker or f"{redis_url}/0", RELAY_RESULT_BACKEND=f"{redis_url}/1",
                   RELAY_STORE_URL=f"{redis_url}/2", RELAY_CACHE_DIR=tempfile.mkdtemp(prefix="relay-fleet-cache-"),
                   PYTHONPATH=str(ROOT))
        return cls(env, logs or Path(tempfile.mkdtemp(prefix="relay-fleet-logs-")))

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
        log = (self.logs / f"{node.split('@')[0]}.log").read_text()
        raise RuntimeError(f"worker {node} did not start:\n{log}")

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

    def client(self):
        from .client import RelayClient
        return RelayClient(self.env["RELAY_BROKER_URL"], self.env["RELAY_RESULT_BACKEND"], self.env["RELAY_STORE_URL"])

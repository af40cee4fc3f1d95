"""A fleet on this machine, for tests, benchmarks and demos: a private redis-server and `celery worker`s.

Workers are started exactly as users start them,
`celery -A relay_workers worker -Q 'relay.*' -n NAME@relay-test`, with no
pool flag unless one is asked for. Each runs in its own process group, so
stopping, killing or pausing it reaches its pool children too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from .ledger import key, text
from .store import connect

if TYPE_CHECKING:
    from .client import RelayClient

ROOT = Path(__file__).resolve().parent.parent
REDIS_CONF = ROOT / "config" / "redis.conf"  # in a checkout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on a free port, its files in `workdir`; `noeviction` as a broker needs; with
    `appendonly` it keeps its data across a restart (appendfsync always: a restart loses nothing).
    With `conf` (config/redis.conf, say) that file's settings instead of those."""

    def __init__(self, workdir: Path, *, appendonly: bool = False, fsync: str = "always",
                 conf: Path | None = None, cluster: bool = False) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server; .ci/test does it)")
        self.exe: str = exe
        self.port = free_port()
        self.workdir = workdir
        self.appendonly = appendonly
        self.fsync = fsync
        self.conf = conf
        self.bus_port = free_port() if cluster else None  # a node of a Redis Cluster (RedisClusterServers joins them)
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        if self.conf is not None:  # redis-server takes its file first; options after it override it
            settings = [str(self.conf)]
        else:
            persistence = ["--appendonly", "yes", "--appendfsync", self.fsync] if self.appendonly else ["--appendonly", "no"]
            settings = ["--save", "", *persistence, "--maxmemory-policy", "noeviction"]
        if self.bus_port is not None:  # the bus port: the default, port + 10000, may be taken or past 65535
            settings += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
                         "5000", "--cluster-port", str(self.bus_port)]
        self.proc = subprocess.Popen(
            [self.exe, *settings, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)  # a process that dies without its teardown leaves no redis-server behind
        client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
        for _ in range(200):
            try:
                client.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def restart(self, down_for: float = 0.0) -> None:
        """Stops redis-server (a clean shutdown), waits, starts it again on the same port and data."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class RedisClusterServers:
    """A Redis Cluster on this machine: `masters` cluster-enabled redis-servers on free ports (appendonly),
    joined with `redis-cli --cluster create`, no replicas. `url` (redis+cluster://) names the first
    master: a client finds the others from it."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install -y redis-server; .ci/test does it)")
        self.nodes: list[RedisServer] = []
        try:
            for i in range(masters):
                self.nodes.append(RedisServer(workdir / f"node-{i}", appendonly=True, cluster=True))
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30) -> None:
        """Waits until every node sees the cluster's state as ok (all slots served)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [redis.Redis(port=node.port).cluster("info").get("cluster_state") for node in self.nodes]
            if all(state == "ok" for state in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become ready")

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def node_serving(self, slot_key: str) -> RedisServer:
        """The master that serves `slot_key`'s slot."""
        slot = redis.Redis(port=self.nodes[0].port).cluster("keyslot", slot_key)
        for node in self.nodes:
            for start, end, *_ in redis.Redis(port=node.port).cluster("slots"):
                if start <= slot <= end and _[0][1] == node.port:
                    return node
        raise RuntimeError(f"no master serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class LocalFleet:
    """Worker processes on this machine sharing one broker and store, started and stopped as a process
    manager would (the gateway's `Fleet` is something else: a handle on a running fleet)."""

    def __init__(self, env: dict[str, str], logs: Path, domain: str = "relay-test") -> None:
        self.env = env
        self.logs = logs
        self.domain = domain  # workers are NAME@DOMAIN
        self.workers: dict[str, subprocess.Popen] = {}

    @classmethod
    def on(cls, redis_url: str, broker: str | None = None, logs: Path | None = None, store: str | None = None,
           **settings: str) -> LocalFleet:
        """A fleet whose broker, results and store are databases of `redis_url` (the store `store` if given:
        a Redis Cluster's URL, say)."""
        env = dict(os.environ, RELAY_BROKER_URL=broker or f"{redis_url}/0", RELAY_RESULT_BACKEND=f"{redis_url}/1",
                   RELAY_STORE_URL=store or f"{redis_url}/2", RELAY_CACHE_DIR=tempfile.mkdtemp(prefix="relay-fleet-cache-"),
                   PYTHONPATH=str(ROOT), **settings)
        return cls(env, logs or Path(tempfile.mkdtemp(prefix="relay-fleet-logs-")))

    def start(self, name: str, queues: str = "relay.*", *, pool: list[str] | None = None, wait: bool = True,
              prefix: list[str] | None = None, **env: str) -> str:
        """Starts `celery -A relay_workers worker -Q QUEUES -n NAME@relay-test [POOL ARGS]` (behind `prefix`,
        e.g. prlimit); returns the node name."""
        node = f"{name}@{self.domain}"
        log = open(self.logs / f"{name}.log", "a")
        self.workers[node] = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "celery", "-A", "relay_workers", "worker", "-Q", queues, "-n", node,
             *(pool or []), "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=dict(self.env, **env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if wait:
            self.wait_hosting(node)
        return node

    def start_beat(self) -> None:
        """`celery -A relay_workers beat`: runs the supervisor on its schedule."""
        self.start_process("beat", ["celery", "-A", "relay_workers", "beat", "--loglevel", "INFO",
                                    "-s", str(self.logs / "beat-schedule")])

    def start_process(self, name: str, module_args: list[str], **env: str) -> None:
        """`python -m MODULE ARGS...` (celery beat, flower, the gateway) in its own process group, logged to NAME.log."""
        log = open(self.logs / f"{name}.log", "a")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", *module_args], cwd=ROOT, env=dict(self.env, **env), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def log(self, node: str) -> str:
        return (self.logs / f"{node.split('@')[0]}.log").read_text()

    def wait_hosting(self, node: str, timeout: float = 60) -> None:
        r = connect(self.env["RELAY_STORE_URL"])
        deadline = time.monotonic() + timeout
        pid = self.workers[node].pid
        while time.monotonic() < deadline:
            if any(text(h).startswith(f"{node}#{pid}.") for h in r.hkeys(key("hosts"))):
                return
            if self.workers[node].poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker {node} did not start:\n{self.log(node)}")

    def signal(self, node: str, sig: int) -> None:
        """Sends a signal to the worker's whole process group (main process and pool children)."""
        os.killpg(self.workers[node].pid, sig)

    def kill(self, node: str) -> None:
        """kill -9 of the worker and its children: no cleanup, no acknowledgement, no hand-off."""
        proc = self.workers.pop(node)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop(self, node: str) -> None:
        proc = self.workers.pop(node)
        try:
            os.killpg(proc.pid, signal.SIGCONT)  # a paused worker cannot stop
            proc.terminate()
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children left behind
        except ProcessLookupError:
            pass
        proc.wait()

    def stop_all(self) -> None:
        for node in list(self.workers):
            self.stop(node)

    def client(self) -> RelayClient:
        from .client import RelayClient
        return RelayClient(self.env["RELAY_BROKER_URL"], self.env["RELAY_RESULT_BACKEND"], self.env["RELAY_STORE_URL"])

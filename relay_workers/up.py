"""`relay up`: a complete local fleet for development and demos, in one command.

It starts, each as the command users type: a private redis-server (append-only,
with config/redis.conf in a checkout, in a data folder it prints) unless
RELAY_STORE_URL points at one, N workers
(`celery -A relay_workers worker -Q 'relay.*' -n wN@HOST`), beat (the
supervisor's schedule) and Flower; prints where each part listens and the
`export` lines for `relay`, `celery` and a Python producer; restarts a worker
that dies, as a process manager would; shows live status; and on Ctrl-C stops
everything cleanly (workers hand their servers off, Redis saves its data).

`relay up --demo` does the same, then deploys the examples, calls, sends and
evaluates, kills the worker owning a server with kill -9, shows the
supervisor bringing the server back with its state, prints the results and
stops everything.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from relay_lang.values import show

from .devfleet import REDIS_CONF, ROOT, LocalFleet, RedisServer, free_port
from .wire import from_wire

EXAMPLES = ROOT / "examples"


class Up:
    def __init__(self, workers: int, data: Path, *, flower: bool) -> None:
        self.count = workers
        self.data = data
        self.flower_port = free_port() if flower else 0
        self.gateway_port = free_port()
        self.token = os.environ.get("RELAY_GATEWAY_TOKEN") or secrets.token_urlsafe(24)
        self.redis: RedisServer | None = None
        self.fleet: LocalFleet | None = None

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        store = os.environ.get("RELAY_STORE_URL")
        if store:
            urls = {k: os.environ[k] for k in ("RELAY_BROKER_URL", "RELAY_RESULT_BACKEND", "RELAY_STORE_URL")
                    if k in os.environ}
            base = None
        else:
            if shutil.which("redis-server") is None:
                raise SystemExit("relay up: redis-server is not installed (.ci/install installs it; or set "
                                 "RELAY_STORE_URL, RELAY_BROKER_URL and RELAY_RESULT_BACKEND to a running Redis)")
            self.redis = (RedisServer(self.data / "redis", conf=REDIS_CONF) if REDIS_CONF.exists()  # a checkout
                          else RedisServer(self.data / "redis", appendonly=True, fsync="everysec"))
            base = self.redis.url
            urls = {"RELAY_BROKER_URL": f"{base}/0", "RELAY_RESULT_BACKEND": f"{base}/1",
                    "RELAY_STORE_URL": f"{base}/2"}
        self.fleet = LocalFleet(dict(os.environ, PYTHONPATH=str(ROOT), **urls), self.data / "logs",
                           domain=socket.gethostname())
        (self.data / "logs").mkdir(exist_ok=True)
        for i in range(1, self.count + 1):
            self.fleet.start(f"w{i}", wait=False)
        self.fleet.start_beat()
        self.fleet.start_process("gateway", ["relay_workers.cli", "gateway", "--port", str(self.gateway_port)],
                                 RELAY_GATEWAY_TOKEN=self.token)
        if self.flower_port:
            self.fleet.start_process("flower", ["celery", "-A", "relay_workers", "flower", f"--port={self.flower_port}",
                                                "--address=127.0.0.1"], FLOWER_UNAUTHENTICATED_API="true")
        for node in [n for n in self.fleet.workers if "@" in n]:
            self.fleet.wait_hosting(node)
        exports = {**urls, "RELAY_GATEWAY": f"http://127.0.0.1:{self.gateway_port}", "RELAY_GATEWAY_TOKEN": self.token}
        if self.flower_port:
            exports["RELAY_FLOWER"] = f"http://127.0.0.1:{self.flower_port}"
        bin_dir = Path(sys.executable).parent
        env_line = "export " + " ".join(f"{k}={v}" for k, v in exports.items()) + f' PATH="{bin_dir}:$PATH"'
        (self.data / "env").write_text(env_line + "\n")
        print(f"relay up: data and logs in {self.data}")
        if self.redis is not None:
            print(f"  redis-server   {base}  (append-only, in {self.data / 'redis'})")
        for node, proc in self.fleet.workers.items():
            print(f"  {node:<14} pid {proc.pid}")
        print(f"  gateway        {exports['RELAY_GATEWAY']}  (Authorization: Bearer $RELAY_GATEWAY_TOKEN; docs at /docs)")
        if self.flower_port:
            print(f"  flower         {exports['RELAY_FLOWER']}/")
        print(f"Point relay, celery, curl and Python producers at it with `. {self.data / 'env'}`, which says:")
        print("  " + env_line)
        print("relay up: ready", flush=True)

    def keep_alive(self) -> list[str]:
        """A process manager's job: a worker that died is started again under its name; returns those."""
        assert self.fleet is not None
        started = []
        for node, proc in list(self.fleet.workers.items()):
            if proc.poll() is not None and "@" in node:
                print(f"relay up: {node} exited ({proc.returncode}); starting it again")
                self.fleet.workers.pop(node)
                started.append(self.fleet.start(node.split("@")[0], wait=False))
        return started

    def status(self) -> str:
        assert self.fleet is not None
        with self.fleet.client() as client:
            servers = client.servers()
            hosts = client.registry.live_hosts()
        listed = ", ".join(f"{s['name']} {s['status']} on {s['owner'] or '-'} ({s['queued']} queued)"
                           for s in servers) or "none deployed"
        return f"{time.strftime('%H:%M:%S')} hosts {len(hosts)}; servers: {listed}"

    def stop(self) -> None:
        if self.fleet is not None:
            self.fleet.stop_all()
        if self.redis is not None:
            self.redis.stop()


def run(workers: int, data: Path, *, demo: bool, flower: bool) -> int:
    up = Up(workers, data, flower=flower)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        up.start()
        if demo:
            return run_demo(up)
        print("Ctrl-C stops everything (servers are handed off cleanly).")
        shown = ""
        while True:
            time.sleep(2)
            up.keep_alive()
            line = up.status()
            if line[9:] != shown:
                print(line, flush=True)
                shown = line[9:]
    except KeyboardInterrupt:
        print("\nrelay up: stopping")
        return 0
    finally:
        up.stop()


def run_demo(up: Up) -> int:
    assert up.fleet is not None
    fleet = up.fleet
    with fleet.client() as client:
        print("\n== deploy examples/accounts.relay")
        for name, version in client.deploy((EXAMPLES / "accounts.relay").read_text(), "examples/accounts.relay"):
            print(f"deployed {name} (version {version})")
        wait(lambda: all(s["status"] == "running" for s in client.servers()), 30)
        print("\n== calls and sends")
        print('accounts.open("ada", 100) ->', show(client.call("accounts", "open", "ada", 100)))
        print('accounts.open("bob", 20)  ->', show(client.call("accounts", "open", "bob", 20)))
        for _ in range(10):
            client.send("accounts", "transfer", "ada", "bob", 1)
        print("10 sends of transfer(ada, bob, 1) queued")
        try:
            client.call("accounts", "transfer", "bob", "ada", 1000)
        except Exception as err:  # noqa: BLE001 - the demo shows the handler's error and the rollback
            print(f"transfer(bob, ada, 1000) -> {err}".splitlines()[0])
        print("balances ->", show(client.call("accounts", "balances")))
        print("\n== an eval job (deployed servers are names)")
        result = client.eval('let b = accounts.balances()\nprint("ada has", b.ada)\nb.ada + b.bob')
        print(f"output: {result.output.strip()}; value: {show(from_wire(result.value))}; ran on {result.worker}")
        print("\n== over HTTP: the gateway")
        gateway = f"http://127.0.0.1:{up.gateway_port}"
        wait(lambda: urllib.request.urlopen(f"{gateway}/healthz", timeout=2), 30)
        request = urllib.request.Request(f"{gateway}/v1/servers/accounts/balances", data=b"[]", method="POST",
                                         headers={"Authorization": f"Bearer {up.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            print(f"POST {gateway}/v1/servers/accounts/balances -> {response.status} {response.read().decode()}")
        print("\n== kill -9 of the worker that owns accounts")
        owner = next(s for s in client.servers() if s["name"] == "accounts")
        node = str(owner["owner"])
        fleet.signal(node, signal.SIGKILL)  # as from outside: relay up starts it again below
        killed = time.monotonic()
        print(f"killed {node}")
        wait(lambda: client.call("accounts", "balances", timeout=1) is not None and
             next(s for s in client.servers() if s["name"] == "accounts")["host"] != owner["host"], 30)
        back = time.monotonic() - killed
        after = next(s for s in client.servers() if s["name"] == "accounts")
        print(f"the supervisor restarted accounts on {after['owner']} in {back:.2f} s "
              f"(restarts {after['restarts']}); state kept:")
        print("balances ->", show(client.call("accounts", "balances")))
        fleet.workers[node].wait()
        for node in up.keep_alive():
            fleet.wait_hosting(node)
        print("\n" + up.status())
    print("\nrelay up --demo: done")
    return 0


def wait(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - between owners: try again
            pass
        time.sleep(0.05)
    raise SystemExit(f"relay up: the fleet did not get there within {timeout:g} s (logs in the data folder)")


def default_data_dir(*, demo: bool) -> Path:
    """~/.relay/up (or $RELAY_UP_DIR); a fresh folder for each demo, which starts from nothing."""
    if demo:
        return Path(tempfile.mkdtemp(prefix="relay-up-demo-"))
    return Path(os.environ.get("RELAY_UP_DIR", Path.home() / ".relay" / "up"))

"""compose.yaml without Docker: its structure, its commands, and the whole stack run as local processes.

Docker is not available on these machines, so the stack compose.yaml
describes is run from compose.yaml's own commands and environment, with the
host `redis` rewritten to 127.0.0.1 and free ports, and then used as a user
would: deploy, call, the gateway over HTTP with its token, Flower with its
password; then the integration tests run against it (RELAY_TEST_STACK=external).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import eventually
from relay_workers.devfleet import ROOT, free_port

COMPOSE = ROOT / "compose.yaml"
VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: object, env: dict[str, str]) -> object:
    """Compose's `${VAR:-default}` and `$$`, as `docker compose` reads them."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def services(env: dict[str, str] | None = None) -> dict[str, dict]:
    return interpolate(yaml.safe_load(COMPOSE.read_text())["services"], env or {})  # type: ignore[return-value]


def container_paths(service: dict) -> dict[str, Path]:
    """A service's volumes: the path in the container -> the checkout's file (or the named volume)."""
    mounts = [volume.split(":") for volume in service.get("volumes", [])]
    return {inside: (ROOT / outside if outside.startswith("./") else Path(outside)) for outside, inside, *_ in mounts}


def test_compose_describes_the_whole_fleet() -> None:
    s = services()
    assert set(s) == {"redis", "worker", "beat", "gateway", "flower"}
    redis_cmd = s["redis"]["command"]
    password = redis_cmd[redis_cmd.index("--requirepass") + 1]
    mounts = container_paths(s["redis"])
    assert redis_cmd[1] in mounts and mounts[redis_cmd[1]] == ROOT / "config" / "redis.conf"  # it runs config/redis.conf
    assert {"appendonly yes", "maxmemory-policy noeviction"} <= set(mounts[redis_cmd[1]].read_text().splitlines())
    assert "/data" in mounts  # a volume for its files
    for name, service in s.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        if name == "redis":
            continue
        assert service["build"] == "." and "command" in service and "sh -c" not in str(service["command"])
        for var in ("RELAY_BROKER_URL", "RELAY_RESULT_BACKEND", "RELAY_STORE_URL"):
            assert service["environment"][var].startswith(f"redis://:{password}@redis:6379/"), (name, var)
    assert s["worker"]["command"] == ["celery", "-A", "relay_workers", "worker", "-Q", "relay.*"]
    assert s["worker"]["deploy"]["replicas"] == 2
    gateway = s["gateway"]["command"]
    assert s["gateway"]["ports"] == [f"{gateway[gateway.index('--port') + 1]}:8000"]
    assert "8000/healthz" in str(s["gateway"]["healthcheck"]) and s["gateway"]["environment"]["RELAY_GATEWAY_TOKEN"]
    assert s["flower"]["ports"] == ["5555:5555"] and "--port=5555" in s["flower"]["command"]
    assert any(a.startswith("--basic-auth=") for a in s["flower"]["command"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "USER relay" in dockerfile


@pytest.mark.parametrize("service", ["worker", "beat", "gateway", "flower"])
def test_every_command_is_one_the_cli_accepts(service) -> None:
    command = services()[service]["command"]
    exe = {"celery": [sys.executable, "-m", "celery"], "relay": [sys.executable, "-m", "relay_workers.cli"]}[command[0]]
    result = subprocess.run([*exe, *command[1:], "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr


class LocalStack:
    """compose.yaml's services as local processes: `redis` is 127.0.0.1 on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {"redis": free_port(), "gateway": free_port(), "flower": free_port()}
        self.vars = {"RELAY_REDIS_PASSWORD": "s3cret-pass", "RELAY_GATEWAY_TOKEN": "t0ken",
                     "RELAY_FLOWER_USER": "ops", "RELAY_FLOWER_PASSWORD": "fl0wer"}
        self.s = services(self.vars)

    def local(self, text: str) -> str:
        return (text.replace("@redis:6379", f"@127.0.0.1:{self.ports['redis']}")
                .replace("--port=5555", f"--port={self.ports['flower']}"))

    def start(self, name: str, replica: int = 0) -> None:
        service = self.s[name]
        command = [self.local(a) for a in service["command"]]
        env = dict(os.environ, PYTHONPATH=str(ROOT), RELAY_CACHE_DIR=str(self.workdir / "cache"),
                   **{k: self.local(str(v)) for k, v in service.get("environment", {}).items()})
        if name == "redis":  # the mounted config/redis.conf read from the checkout
            mounts = container_paths(service)
            command = [str(mounts[a]) if a in mounts else a for a in command]
            command += ["--port", str(self.ports["redis"]), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        elif command[0] == "celery":
            command = [sys.executable, "-m", *command]
            if name == "worker":  # replicas have their own container hostnames; here, their own node names
                command += ["-n", f"w{replica}@compose"]
        elif command[0] == "relay":
            command = [sys.executable, "-m", "relay_workers.cli", *command[1:]]
            command[command.index("--port") + 1] = str(self.ports["gateway"])
        log = open(self.workdir / f"{name}{replica}.log", "w")
        self.procs[f"{name}{replica}"] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                                          stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_the_stack_runs_from_compose_commands(tmp_path) -> None:
    import base64
    import json

    from relay_workers.client import RelayClient
    stack = LocalStack(tmp_path)
    try:
        stack.start("redis")
        time.sleep(0.5)
        for replica in (1, 2):
            stack.start("worker", replica)
        for name in ("beat", "gateway", "flower"):
            stack.start(name)
        env = stack.s["worker"]["environment"]
        client = RelayClient(*(stack.local(env[k]) for k in ("RELAY_BROKER_URL", "RELAY_RESULT_BACKEND",
                                                              "RELAY_STORE_URL")))
        eventually(lambda: len(client.registry.live_hosts()) == 2, 60, "two workers", 0.3)
        client.deploy("server tally { state { n: 0 }\n receive fn add(k) { state.n += k\n state.n } }")
        eventually(lambda: all(s["status"] == "running" for s in client.servers()), 60, "tally running", 0.3)
        assert client.call("tally", "add", 2) == 2
        gateway = f"http://127.0.0.1:{stack.ports['gateway']}"
        eventually(lambda: get(f"{gateway}/healthz"), 60, "the gateway", 0.3)
        reply = json.loads(get(f"{gateway}/v1/servers/tally/add", {"Authorization": "Bearer t0ken",
                                                                   "Content-Type": "application/json"}, b"[3]"))
        assert reply["value"] == 5
        auth = base64.b64encode(b"ops:fl0wer").decode()
        flower = f"http://127.0.0.1:{stack.ports['flower']}"
        eventually(lambda: get(f"{flower}/api/workers", {"Authorization": f"Basic {auth}"}), 60, "Flower", 0.3)
        client.close()
        suite = subprocess.run(  # the integration tests, against this stack
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/test_fleet.py"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
            env=dict(os.environ, RELAY_TEST_STACK="external", PYTHONPATH=str(ROOT),
                     **{k: stack.local(env[k]) for k in ("RELAY_BROKER_URL", "RELAY_RESULT_BACKEND", "RELAY_STORE_URL")}))
        print(suite.stdout[-2000:])
        assert suite.returncode == 0 and " passed" in suite.stdout
    finally:
        stack.stop()

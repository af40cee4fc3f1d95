"""The HTTP gateway as users run it: `relay gateway` as a process in front of a real redis-server and real
`celery -A relay_workers worker -Q 'relay.*'` processes, spoken to with a plain HTTP client (httpx), JSON-RPC
as a Relay 0.3 client would, and schemathesis over its OpenAPI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from prometheus_client.parser import text_string_to_metric_families
from schemathesis import GenerationMode

from relay_workers.devfleet import ROOT, LocalFleet, RedisServer, free_port

from .conftest import wait_answering

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 65536
READ_TIMEOUT = 2

COUNTER = """
server counter {
    state { count: 0 }
    receive fn incr(by: number) { state.count += by; state.count }
    receive fn fail() { state.count = -1; error("refused") }
    receive fn put(entry) { entry.name + "=" + str(entry.n) }
    receive fn nap(seconds: number) { let t = clock()
        while clock() - t < seconds {}
        seconds }
    receive fn get() { state.count }
}
"""
TALLY = "server tally {\n    state { n: 0 }\n    receive fn add(k: number) { state.n += k; state.n }\n}\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[LocalFleet]:
    store = RedisServer(tmp_path_factory.mktemp("gateway-redis"))
    f = LocalFleet.on(store.url, logs=tmp_path_factory.mktemp("gateway-logs"))
    try:
        nodes = [f.start(name, wait=False) for name in ("gw1", "gw2")]
        for node in nodes:
            f.wait_hosting(node)
        yield f
    finally:
        f.stop_all()
        store.stop()


def start_gateway(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "relay_workers.cli", "gateway", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> str:
    """Stops a process we started (by its PID, its group too); returns its output."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    except ProcessLookupError:
        out, _ = proc.communicate()
    return out.decode(errors="replace")


@pytest.fixture(scope="module")
def gateway(fleet) -> Iterator[str]:
    port = free_port()
    proc = start_gateway(dict(fleet.env, RELAY_GATEWAY_TOKEN=TOKEN), "--port", str(port), "--timeout", "20",
                         "--read-timeout", str(READ_TIMEOUT), "--max-body", str(MAX_BODY))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{url}/healthz", proc, "the gateway did not start")
        yield url
    finally:
        out = stop(proc)
        assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def http(gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, headers=AUTH, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def deployed(http) -> None:
    for source in (COUNTER, TALLY):
        assert http.post("/v1/deploy", json={"source": source}).status_code == 200
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if {s["status"] for s in http.get("/v1/servers").json()} == {"running"}:
            return
        time.sleep(0.1)
    pytest.fail(f"servers not running: {http.get('/v1/servers').json()}")


def is_error(response: httpx.Response, status: int, kind: str) -> dict:
    """An error response: the status, a JSON body with the Relay error's fields, no traceback or HTML."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["kind"] == kind and {"message", "file", "line", "col", "stack", "text"} <= set(error)
    assert "Traceback" not in response.text
    return error


# ---------------------------------------------------------------- start-up, auth, health

def test_refuses_to_start_without_a_token(fleet) -> None:
    env = {k: v for k, v in fleet.env.items() if k != "RELAY_GATEWAY_TOKEN"}
    proc = start_gateway(env, "--port", str(free_port()))
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 2 and "RELAY_GATEWAY_TOKEN is not set" in out and "--insecure" in out


def test_auth_health_and_docs(gateway, http) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path in (("GET", "/v1/servers"), ("POST", "/rpc"), ("GET", "/metrics"), ("POST", "/v1/eval")):
            response = httpx.request(method, gateway + path, headers=headers, json={"source": "1"})
            assert is_error(response, 401, "unauthorized") and response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{gateway}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway}/readyz").json()
    assert ready["status"] == "ready" and ready["hosts"] == 2
    spec = httpx.get(f"{gateway}/openapi.json").json()
    assert {"/v1/eval", "/v1/deploy", "/v1/servers/{name}/{handler}", "/v1/servers/{name}/{handler}/send",
            "/v1/servers", "/v1/servers/{name}", "/v1/dead-letters", "/v1/servers/{name}/restart", "/healthz",
            "/readyz", "/metrics", "/rpc", "/jsonrpc"} <= set(spec["paths"])
    docs = httpx.get(f"{gateway}/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


def test_readyz_turns_503_within_the_host_ttl_of_the_last_hosts_death(tmp_path) -> None:
    """kill -9 of the last worker, with no beat or other host to reap it: /readyz answers 503 once its
    heartbeat is older than RELAY_HOST_TTL (a fleet of its own, host TTL 3 s, heartbeat 0.5 s)."""
    host_ttl = 3.0
    store = RedisServer(tmp_path / "redis")
    f = LocalFleet.on(store.url, logs=tmp_path, RELAY_HOST_TTL=str(host_ttl), RELAY_HEARTBEAT="0.5", RELAY_LEASE_TTL="2")
    port = free_port()
    proc = start_gateway(dict(f.env, RELAY_GATEWAY_TOKEN=TOKEN), "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        node = f.start("last")
        wait_answering(f"{url}/readyz", proc, "the gateway did not become ready")
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready", "hosts": 1}
        f.kill(node)
        killed = time.monotonic()
        while (ready := httpx.get(f"{url}/readyz", timeout=5)).status_code == 200:
            assert time.monotonic() - killed < host_ttl + 5, "still ready"
            time.sleep(0.05)
        seconds = time.monotonic() - killed
        print(f"/readyz 503 {seconds:.2f} s after kill -9 of the last worker (RELAY_HOST_TTL {host_ttl:g} s)")
        assert seconds <= host_ttl + 1.0
        assert "no worker host is live" in is_error(ready, 503, "unreachable")["message"]
        assert "relay_hosts 0.0" in httpx.get(f"{url}/metrics", headers=AUTH).text
    finally:
        assert "Traceback" not in stop(proc)
        f.stop_all()
        store.stop()


def test_unreachable_store_is_503(fleet) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    env = dict(fleet.env, RELAY_GATEWAY_TOKEN=TOKEN, RELAY_BROKER_URL=f"{dead}/0", RELAY_RESULT_BACKEND=f"{dead}/1",
               RELAY_STORE_URL=f"{dead}/2")
    proc = start_gateway(env, "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
            assert "cannot reach the fleet" in is_error(c.get("/readyz"), 503, "unreachable")["message"]
            assert is_error(c.get("/v1/servers"), 503, "unreachable")
            assert is_error(c.post("/v1/servers/counter/incr", json=[1]), 503, "unreachable")
            assert is_error(c.post("/v1/deploy", json={"source": COUNTER}), 503, "unreachable")
            assert "relay_store_up 0.0" in c.get("/metrics").text
            answer = c.post("/rpc", json={"jsonrpc": "2.0", "method": "counter.get", "id": 1}).json()
            assert answer["error"]["code"] == -32603 and answer["error"]["data"]["kind"] == "unreachable"
    finally:
        assert "Traceback" not in stop(proc)


# ---------------------------------------------------------------- REST

def test_deploy_call_send_and_servers(http, deployed) -> None:
    assert http.post("/v1/servers/counter/incr", json=[2]).json() == {"value": 2}
    sent = http.post("/v1/servers/counter/incr/send", json=[3])
    assert sent.status_code == 202 and len(sent.json()["message_id"]) == 32
    for _ in range(2):  # a retry with the same message id is applied once
        assert http.post("/v1/servers/counter/incr/send?message_id=once-1", json=[10]).json() == {"message_id": "once-1"}
    assert http.post("/v1/servers/counter/incr", params={"message_id": "c-1"}, json=[0]).json() == {"value": 15}
    assert http.post("/v1/servers/counter/incr", params={"message_id": "c-1"}, json=[0]).json() == {"value": 15}
    error = is_error(http.post("/v1/servers/counter/fail"), 422, "error")
    assert error["message"] == "refused" and error["line"] == 5 and error["file"] == "<deploy>"
    assert http.post("/v1/servers/counter/get").json() == {"value": 15}  # the failed handler rolled back
    one = http.get("/v1/servers/counter").json()
    assert one["status"] == "running" and one["owner"].endswith("@relay-test") and one["failed"] is False
    assert one["queued"] == 0 and one["restarts"] == 0 and one["state_bytes"] > 0 and one["messages_applied"] >= 5
    assert {s["name"] for s in http.get("/v1/servers").json()} == {"counter", "tally"}
    assert is_error(http.get("/v1/servers/nobody"), 404, "not found")["message"] == "no server named 'nobody' is deployed"
    assert "has no handler 'nope'" in is_error(http.post("/v1/servers/counter/nope"), 404, "not found")["message"]
    assert is_error(http.post("/v1/servers/nobody/incr/send", json=[1]), 404, "not found")
    assert "expects 1 argument, got 2" in is_error(http.post("/v1/servers/counter/incr", json=[1, 2]), 422,
                                                   "bad request")["message"]
    assert is_error(http.post("/v1/servers/counter/incr", json={"by": 1}), 422, "bad request")
    assert is_error(http.post("/v1/servers/counter/incr", json=[{"$num": "big"}]), 422, "bad request")
    bad = is_error(http.post("/v1/deploy", json={"source": "server s {\n  receive fn f( {}\n}"}), 422, "syntax error")
    assert bad["line"] == 2 and bad["col"]
    assert is_error(http.post("/v1/deploy", json={"source": "1 + 1"}), 422, "error")


def test_deploy_refuses_what_cannot_compile_or_load(http, deployed) -> None:
    """The gateway's deploy checks the source as `relay deploy` does (RelayClient.deploy): a source whose
    @llvm handler cannot compile, or whose loading fails, is a 422 with the positioned error; nothing of it
    is deployed, and a running server keeps its version."""
    before = {s["name"]: (s["version"], s["owner"]) for s in http.get("/v1/servers").json()}
    spinner = "server spinner {\n state { n: 0 }\n @llvm\n receive fn spin(k: number) { let t = clock()\n k + t }\n}\n"
    error = is_error(http.post("/v1/deploy", json={"source": spinner, "file": "spinner.relay"}), 422, "compile error")
    assert (error["file"], error["line"]) == ("spinner.relay", 4)
    assert error["text"].startswith(f"spinner.relay:4:{error['col']}: compile error: @llvm spin: builtin clock()")
    upgrade = TALLY.replace("state { n: 0 }", "state { n: 0, extra: [1][2] }")  # the running tally's state fails
    error = is_error(http.post("/v1/deploy", json={"source": upgrade, "file": "tally.relay"}), 422, "error")
    assert error["text"].startswith("tally.relay:2:") and "index 2 out of range" in error["message"]
    assert {s["name"]: (s["version"], s["owner"]) for s in http.get("/v1/servers").json()} == before
    assert http.post("/v1/servers/tally/add", json=[0]).status_code == 200


def test_eval(http, deployed) -> None:
    result = http.post("/v1/eval", json={"source": 'fn sq(x) { x * x }\nprint("hi", sq(3))\nsq(4) + 0.5'}).json()
    assert result["value"] == 16.5 and result["output"] == "hi 9\n" and result["error"] is None
    assert result["worker"].endswith("@relay-test") and "seconds" in result["timings"] and result["tiers"]
    failed = http.post("/v1/eval", json={"source": "let a = [1]\na[3]"})
    assert failed.status_code == 200 and failed.json()["error"]["line"] == 2
    assert http.post("/v1/eval", json={"source": "counter.get()", "server": "counter"}).json()["value"] >= 0
    assert is_error(http.post("/v1/eval", json={"source": "1", "server": "nobody"}), 404, "not found")
    started = time.monotonic()
    slow = http.post("/v1/eval", json={"source": "let t = clock()\nwhile clock() - t < 2 {}", "timeout": 1})
    assert "within 1 s" in is_error(slow, 504, "timeout")["message"] and time.monotonic() - started < 1.9


def test_restart_and_dead_letters(fleet, http, deployed) -> None:
    assert http.post("/v1/servers/tally/restart").json() == {"restarting": "tally"}
    assert is_error(http.post("/v1/servers/nobody/restart"), 404, "not found")
    assert http.post("/v1/servers/tally/add", json=[0], params={"timeout": 20}).status_code == 200
    redis.Redis.from_url(fleet.env["RELAY_BROKER_URL"]).lpush("relay.eval", b"not a kombu message")
    deadline = time.monotonic() + 10
    while not (letters := http.get("/v1/dead-letters").json()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert letters and letters[0]["queue"] == "relay.eval" and letters[0]["reason"]
    assert http.get("/v1/dead-letters", params={"server": "tally"}).json() == []


def test_metrics_cover_the_fleet(http, deployed) -> None:
    http.post("/v1/servers/counter/incr", json=[0])
    http.post("/v1/eval", json={"source": "@llvm\nfn sq(x) { x * x }\nsq(3)"})
    time.sleep(2.5)  # hosts flush their figures at each heartbeat
    text = http.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("relay_store_up", ())] == 1 and samples[("relay_hosts", ())] == 2
    assert samples[("relay_servers", (("status", "running"),))] == 2
    assert samples[("relay_server_messages_applied_total", (("server", "counter"),))] >= 5
    assert samples[("relay_server_queue_length", (("server", "counter"),))] == 0
    assert samples[("relay_server_restarts_total", (("server", "tally"),))] == 0
    assert samples[("relay_server_failed", (("server", "tally"),))] == 0
    assert samples[("relay_server_acquisitions_total", (("server", "tally"),))] >= 1
    assert sum(v for (name, _), v in samples.items() if name == "relay_host_leases") == 2
    assert sum(v for (name, _), v in samples.items() if name == "relay_host_servers") == 2
    assert samples[("relay_dead_letters", ())] >= 0 and ("relay_eval_queue_length", ()) in samples
    route = (("method", "POST"), ("route", "/v1/servers/{name}/{handler}"), ("status", "200"))
    assert samples[("relay_gateway_requests_total", route)] >= 1
    assert samples[("relay_gateway_fleet_operations_total", (("operation", "call"), ("outcome", "ok")))] >= 1
    assert any(name == "relay_gateway_request_duration_seconds_bucket" for name, _ in samples)
    assert any(name == "relay_gateway_fleet_operation_duration_seconds_bucket" for name, _ in samples)
    # what the workers did, fleet-wide (flushed into the store by every worker)
    assert samples[("relay_messages_total", ())] >= 1 and samples[("relay_eval_jobs_total", ())] >= 1
    assert samples[("relay_message_seconds_count", ())] >= 1 and samples[("relay_eval_seconds_count", ())] >= 1
    assert samples[("relay_message_seconds_bucket", (("le", "+Inf"),))] == samples[("relay_message_seconds_count", ())]
    assert sum(v for (name, labels), v in samples.items() if name == "relay_compile_cache_lookups_total") >= 1
    assert ("relay_message_errors_total", ()) in samples and ("relay_dead_lettered_total", ()) in samples


# ---------------------------------------------------------------- JSON-RPC, as a Relay 0.3 client

def rpc(gateway: str, payload: object, **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway}/rpc", json=payload, headers={**AUTH, **headers}, timeout=30)


def test_json_rpc(gateway, http, deployed) -> None:
    one = rpc(gateway, {"jsonrpc": "2.0", "method": "counter.incr", "params": [1], "id": 1})
    assert one.status_code == 200 and set(one.json()) == {"jsonrpc", "result", "id"} and one.json()["id"] == 1
    named = rpc(gateway, {"jsonrpc": "2.0", "method": "counter.put", "params": {"name": "ada", "n": 3}, "id": "a"})
    assert named.json() == {"jsonrpc": "2.0", "result": "ada=3", "id": "a"}
    before = http.post("/v1/servers/tally/add", json=[0]).json()["value"]
    note = rpc(gateway, {"jsonrpc": "2.0", "method": "tally.add", "params": [5]})
    assert note.status_code == 204 and note.content == b""
    assert http.post("/v1/servers/tally/add", json=[0]).json()["value"] == before + 5  # applied in order
    batch = rpc(gateway, [{"jsonrpc": "2.0", "method": "tally.add", "params": [1], "id": 1},
                          {"jsonrpc": "2.0", "method": "tally.add", "params": [1]},
                          {"jsonrpc": "2.0", "method": "nobody.add", "params": [], "id": 2},
                          {"jsonrpc": "1.0", "method": "tally.add", "id": 3}, 7])
    answers = {a["id"]: a for a in batch.json() if a["id"] is not None}
    assert batch.status_code == 200 and len(batch.json()) == 4 and "result" in answers[1]
    assert answers[2]["error"]["code"] == -32601 and answers[3]["error"]["code"] == -32600
    assert rpc(gateway, [{"jsonrpc": "2.0", "method": "tally.add", "params": [1]}]).status_code == 204

    def code(payload: object, status: int = 200, **headers: str) -> dict:
        response = rpc(gateway, payload, **headers) if not isinstance(payload, bytes) else httpx.post(
            f"{gateway}/rpc", content=payload, headers=AUTH)
        assert response.status_code == status and response.json()["jsonrpc"] == "2.0"
        return response.json()["error"]

    assert code(b'{"jsonrpc": "2.0", "method": ', 400)["code"] == -32700
    assert code({"method": "counter.get", "id": 1}, 400)["code"] == -32600
    assert code({"jsonrpc": "2.0", "method": "counter.get", "params": 5, "id": 1}, 400)["code"] == -32600
    assert code([], 400)["code"] == -32600
    assert code({"jsonrpc": "2.0", "method": "nodot", "id": 1})["code"] == -32601
    assert "has no handler" in code({"jsonrpc": "2.0", "method": "counter.nope", "id": 1})["data"]["message"]
    assert code({"jsonrpc": "2.0", "method": "counter.incr", "params": [1, 2], "id": 1})["code"] == -32602
    failed = code({"jsonrpc": "2.0", "method": "counter.fail", "id": 1})
    assert failed["code"] == -32000 and failed["message"] == "Server error"
    assert failed["data"]["message"] == "refused" and failed["data"]["line"] == 5 and "stack" in failed["data"]
    slow = code({"jsonrpc": "2.0", "method": "counter.nap", "params": [1.5], "id": 9}, **{"X-Relay-Timeout": "0.3"})
    assert slow["code"] == -32603 and slow["data"]["kind"] == "timeout"


def test_jsonrpc_raw_source(gateway) -> None:
    answer = httpx.post(f"{gateway}/jsonrpc", content="fn f(x) { x * 2 }\n[f(1), f(2.5), \"x\"]", headers=AUTH)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert answer.text == '[2, 5, "x"]'
    assert is_error(httpx.post(f"{gateway}/jsonrpc", content="1 +", headers=AUTH), 422, "syntax error")["line"] == 1


# ---------------------------------------------------------------- bad input at the edge

def test_bad_input_at_the_edge(gateway, http) -> None:
    assert is_error(http.post("/v1/eval", content=b"x" * (MAX_BODY + 1)), 413, "too large")
    chunks = (b"[" + b"1," * 1000 for _ in range(100))  # chunked, no length declared
    assert is_error(http.post("/rpc", content=chunks), 413, "too large")
    assert is_error(http.get("/nowhere"), 404, "not found")
    assert is_error(http.delete("/v1/servers"), 405, "method not allowed")
    assert is_error(http.post("/v1/eval", content=b"{not json", headers={"content-type": "application/json"}), 400,
                    "bad request")
    assert is_error(http.post("/v1/eval", json={"source": 5}), 422, "bad request")
    assert is_error(http.post("/v1/eval", json={"source": "1", "timeout": -1}), 422, "bad request")
    assert is_error(http.post("/v1/servers/counter/incr", json=[[[[1]]]] * 2), 422, "bad request")
    assert is_error(http.post("/rpc", headers={"X-Relay-Timeout": "soon"}, json={}), 422, "bad request")


def test_slow_clients_do_not_hold_up_others(gateway) -> None:
    port = int(gateway.rsplit(":", 1)[1])
    slow_body = socket.create_connection(("127.0.0.1", port))
    slow_body.sendall(b"POST /v1/eval HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sou")
    slow_headers = socket.create_connection(("127.0.0.1", port))
    slow_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        started = time.monotonic()
        assert httpx.get(f"{gateway}/healthz").status_code == 200 and time.monotonic() - started < 0.5
        slow_body.settimeout(READ_TIMEOUT + 5)
        raw = b""
        while not raw.endswith(b"}}") and (chunk := slow_body.recv(65536)):
            raw += chunk
        answer = raw.decode()
        assert answer.startswith("HTTP/1.1 408") and '"kind":"timeout"' in answer
        assert time.monotonic() - started >= READ_TIMEOUT - 0.1
    finally:
        slow_body.close()
        slow_headers.close()


async def burst(gateway: str, method: str, path: str, body: object = None) -> list[tuple[int, float, str]]:
    """500 requests at once, each on its own connection: (status, seconds, body) of each."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gateway, headers=AUTH, timeout=60, limits=limits) as c:
        async def one() -> tuple[int, float, str]:
            started = time.perf_counter()
            response = await c.request(method, path, json=body)
            return response.status_code, time.perf_counter() - started, response.text
        return await asyncio.gather(*(one() for _ in range(500)))


def report(what: str, results: list[tuple[int, float, str]], wall: float) -> None:
    failures = [text for status, _, text in results if status != 200]
    assert not failures, failures[:3]
    times = sorted(t for _, t, _ in results)
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    print(f"\nburst of 500 concurrent {what}: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, all in {wall:.2f} s")


def test_burst_of_500_concurrent_requests(gateway, http, deployed) -> None:
    before = http.post("/v1/servers/tally/add", json=[0]).json()["value"]
    started = time.perf_counter()
    calls = asyncio.run(burst(gateway, "POST", "/v1/servers/tally/add", [1]))
    report("calls to one server", calls, time.perf_counter() - started)
    assert http.post("/v1/servers/tally/add", json=[0]).json()["value"] == before + 500  # each applied once
    started = time.perf_counter()
    reads = asyncio.run(burst(gateway, "GET", "/v1/servers/tally"))
    report("reads of a server's record", reads, time.perf_counter() - started)


# ---------------------------------------------------------------- schemathesis over /openapi.json

EXAMPLES = int(os.environ.get("RELAY_SCHEMATHESIS_EXAMPLES", "25"))  # per operation and generation mode


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_schemathesis(gateway, deployed, mode: GenerationMode) -> None:
    """Generated requests (valid ones, then invalid ones) for every operation of /openapi.json: no 5xx,
    no hang, every error a JSON body."""
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi.json")
    sent = 0
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate, Phase.shrink], database=None)
        def check(case) -> None:
            nonlocal sent
            sent += 1
            case.headers = {**{k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}, **AUTH}
            started = time.monotonic()
            response = case.call(base_url=gateway, timeout=25)
            where = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
            assert time.monotonic() - started < 25, where
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 400:
                assert response.headers["content-type"][0].startswith("application/json"), f"{where}: {response.text}"
                body = response.json()
                assert "error" in body and "Traceback" not in response.text, f"{where}: {response.text}"

        try:
            check()
        except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE
    print(f"\nschemathesis ({mode.value}): {sent} requests over {len(operations)} operations, "
          f"statuses {dict(sorted(statuses.items()))}")


def test_a_familys_servers_in_the_fleet_pages(http, deployed) -> None:
    """A family's row and its servers' rows come back in the dashboard's pages (their records hold no version
    of their own: the family's is theirs); its own name is no server to restart."""
    meters = "server meter[id] { state { n: 0 } receive fn read() { state.n += 1; state.n } }"
    assert http.post("/v1/deploy", json={"source": meters}).status_code == 200
    assert http.post("/v1/servers/meter[a]/read", json=[], params={"timeout": 20}).json() == {"value": 1}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the gateway's index is rebuilt as it ages
        page = http.get("/v1/fleet/servers", params={"family": "meter"}).json()
        if page["matched"] == 2:
            break
        time.sleep(0.2)
    rows = {s["name"]: s for s in page["servers"]}
    assert set(rows) == {"meter[]", "meter[a]"} and rows["meter[]"]["status"] == "family", page
    assert rows["meter[a]"]["status"] in ("running", "starting") and rows["meter[a]"]["version"] >= 1
    assert http.get("/v1/fleet/servers", params={"family": "meter", "prefix": "tally"}).json()["matched"] == 0
    assert "is a family" in http.post("/v1/servers/meter/restart").json()["error"]["message"]

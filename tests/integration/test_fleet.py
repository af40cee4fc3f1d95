"""The fleet with real Redis (and RabbitMQ when one answers) and real `celery worker` processes,
started the way users start them: `celery -A relay_workers worker -Q 'relay.*'`, no pool flag."""

from __future__ import annotations

import json
import threading
import time

import pytest

from relay_lang.errors import RelayError
from relay_workers.ledger import shard_queue

COUNTER = """
server {name} {{
    state {{ count: 0, log: [] }}
    receive fn incr(by: number) {{ state.count += by; state.log.push(by); state.count }}
    receive fn fail() {{ state.count = -1; error("refused") }}
    receive fn get() {{ state }}
}}
"""


@pytest.fixture(scope="module")
def hosts(fleet):
    return [fleet.start("w1", "relay.*"), fleet.start("w2", "relay.*")]


def deploy(client, source: str) -> None:
    names = [name for name, _version in client.deploy(source)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # placed servers are picked up within a heartbeat
        if all(s["status"] in ("running", "family") for s in client.servers() if s["name"] in names):
            return
        time.sleep(0.1)


def test_eval_returns_value_output_tiers_and_timings(hosts, client) -> None:
    result = client.eval("fn sq(x) { x * x }\nprint(\"hi\", sq(3))\nsq(4) + 0.5")
    assert result.error is None and result.value == 16.5 and result.output == "hi 9\n"
    assert result.worker in hosts and "seconds" in result.timings
    bad = client.eval("let a = [1]\nprint(a[3])")
    assert bad.error["message"] == "index 3 out of range for array of length 1" and bad.error["line"] == 2
    with pytest.raises(RelayError, match="index 3"):
        bad.raise_for_error()


def test_plain_celery_producers_get_json(hosts, client) -> None:
    result = client.app.send_task("relay.eval", args=["[1, 2, {a: true}]"], queue="relay.eval").get(timeout=30)
    assert json.loads(json.dumps(result))["value"] == [1, 2, {"a": True}]


def test_deploy_call_send_and_rollback(hosts, client) -> None:
    deploy(client, COUNTER.format(name="counter"))
    assert client.call("counter", "incr", 2) == 2
    client.send("counter", "incr", 3)
    with pytest.raises(RelayError, match="refused"):
        client.call("counter", "fail")
    assert client.call("counter", "get") == {"count": 5, "log": [2, 3]}
    listed = {s["name"]: s for s in client.servers()}
    assert listed["counter"]["owner"] in hosts and listed["counter"]["status"] == "running"


def test_a_failed_message_in_a_batch_undoes_only_itself(hosts, client) -> None:
    deploy(client, COUNTER.format(name="batch").replace(
        "receive fn get()", "receive fn hold(s) { let t = clock()\n while clock() - t < s { } }\n    receive fn get()"))
    client.send("batch", "hold", 1.0)  # the messages after it queue up and are taken as one batch
    ids = [client.send("batch", "incr", 1), client.send("batch", "fail"), client.send("batch", "incr", 2)]
    queued = client.ledger.queued("batch")
    assert client.call("batch", "get") == {"count": 3, "log": [1, 2]}
    replies = [client.ledger.applied("batch", i) for i in ids]
    print(f"queued together: {queued}; replies: {replies[0]}, {replies[1]['error']['message']!r}, {replies[2]}")
    assert queued >= 3 and replies[0] == {"value": 1} and replies[2] == {"value": 3}
    assert replies[1]["error"]["message"] == "refused"


def test_send_order_from_several_producers(hosts, client, fleet) -> None:
    deploy(client, "server journal { state { seen: [] }\n receive fn add(p, i) { state.seen.push([p, i]) }\n"
                   " receive fn all() { state.seen } }")
    per_producer = 40

    def produce(p: int) -> None:
        c = fleet.client()
        for i in range(per_producer):
            c.send("journal", "add", p, i)
        c.close()

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 30
    seen: list = []
    while time.monotonic() < deadline and len(seen) < 3 * per_producer:
        seen = client.call("journal", "all")
        time.sleep(0.2)
    for p in range(3):
        mine = [i for q, i in seen if q == p]
        lost = per_producer - len(set(mine))
        duplicated = len(mine) - len(set(mine))
        print(f"producer {p}: {len(mine)} applied, lost {lost}, duplicated {duplicated}")
        assert mine == list(range(per_producer))


def test_server_to_server_calls_and_a_cycle(hosts, client) -> None:
    deploy(client, "server ping { receive fn go(n) { pong.back(n) + 1 } receive fn loop() { pong.loop() } }\n"
                   "server pong { receive fn back(n) { n * 2 } receive fn loop() { ping.loop() } }")
    assert client.call("ping", "go", 20) == 41
    start = time.monotonic()
    with pytest.raises(RelayError, match=r"call cycle: ping -> pong -> ping"):
        client.call("ping", "loop", timeout=30)
    assert time.monotonic() - start < 10  # fails at once, not by a timeout


def test_hot_upgrade_keeps_state(hosts, client) -> None:
    deploy(client, COUNTER.format(name="upgraded"))
    client.call("upgraded", "incr", 7)
    deploy(client, "server upgraded { state { count: 0, note: \"v2\" }\n"
                   " receive fn get() { [state.count, state.note] } }")
    assert client.call("upgraded", "get") == [7, "v2"]


def test_bad_input_gets_structured_errors_and_nothing_is_lost(hosts, client) -> None:
    deploy(client, COUNTER.format(name="sturdy"))
    client.call("sturdy", "incr", 1)
    # plain Celery producers publish on the server's shard queue (on Redis, relay.sturdy works too: test_bad_input)
    bad = client.app.send_task("relay.deliver", args=[1, 2], queue=shard_queue("sturdy")).get(timeout=30)
    assert bad["error"]["kind"] == "bad request"
    with pytest.raises(RelayError, match="has no handler 'nope'"):
        client.call("sturdy", "nope")
    with pytest.raises(RelayError, match="incr expects 1 argument, got 2"):
        client.call("sturdy", "incr", 1, 2)
    with pytest.raises(RelayError, match="parameter 'by' expects number, got string"):
        client.call("sturdy", "incr", "x")
    with pytest.raises(RelayError, match="cannot be a Relay value"):
        client.call("sturdy", "incr", object())
    bad = client.eval("let x = ")
    assert bad.error["kind"] == "syntax error"
    assert client.call("sturdy", "get") == {"count": 1, "log": [1]}


def test_two_workers_share_the_compile_cache(fleet, client) -> None:
    # two workers that run eval jobs only (no relay.*: they host no servers, so placement never uses them)
    hosts = [fleet.start("w3", "only-w3", wait=False), fleet.start("w4", "only-w4", wait=False)]
    source = "@llvm\nfn tri(n) { let s = 0\n for i in 0..n { s += i * 3 }\n s }\ntri(1000)"
    first = client.app.send_task("relay.eval", args=[source], queue="only-w3").get(timeout=60)
    second = client.app.send_task("relay.eval", args=[source], queue="only-w4").get(timeout=60)
    assert first["value"] == second["value"] == 1498500
    assert (first["worker"], second["worker"]) == tuple(hosts)
    assert first["timings"]["compiled"] == 1
    assert second["timings"]["compiled"] == 0 and second["timings"]["loaded_from_store"] == 1


def test_cli_mirrors_the_client(hosts, client, fleet, tmp_path) -> None:
    import subprocess
    import sys

    def relay(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "relay_workers.cli", *args], capture_output=True, text=True,
                              env=fleet.env, timeout=60)

    prog = tmp_path / "tally.relay"
    prog.write_text("server tally {\n state { n: 0 }\n receive fn add(k: number) { state.n += k; state.n }\n"
                    " receive fn boom() {\n  error(\"no\")\n }\n}\n")
    assert relay("deploy", str(prog)).stdout == "deployed tally (version 1)\n"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(s["status"] == "running" for s in client.servers()):
        time.sleep(0.1)
    assert relay("call", "tally", "add", "4").stdout == "4\n"
    assert len(relay("send", "tally", "add", "1").stdout.strip()) == 32
    failed = relay("call", "tally", "boom")
    assert failed.returncode == 1 and f"{prog}:5:3: error: no" in failed.stderr and "Traceback" not in failed.stderr
    listed = json.loads(relay("servers", "--json").stdout)["servers"]
    tally = next(s for s in listed if s["name"] == "tally")
    assert tally["owner"] in hosts and tally["status"] == "running" and tally["restarts"] == 0
    nosuch = relay("call", "nosuch", "foo")
    assert (nosuch.returncode, nosuch.stderr) == (1, "error: no server named 'nosuch' is deployed\n")
    assert relay("send", "nosuch", "foo").returncode == 1
    refused = tmp_path / "log.relay"
    refused.write_text("server log { receive fn f() { 1 } }\n")
    bad = relay("deploy", str(refused))
    assert bad.returncode == 1 and "'log' is a builtin function" in bad.stderr and f"{refused}:1:" in bad.stderr
    assert "log" not in {s["name"] for s in client.servers()}
    evaluated = relay("eval", "-c", "print(tally.add(0))\n1 + 1")
    assert (evaluated.returncode, evaluated.stdout) == (0, "5\n2\n"), evaluated.stderr
    bad = relay("call", "tally", "add", "not json")
    assert bad.returncode == 1 and "is not JSON" in bad.stderr


SPINNER = "server spinner {\n state { n: 0 }\n @llvm\n receive fn spin(k: number) { let t = clock()\n  k + t }\n}\n"


def test_deploy_refuses_what_cannot_compile_or_load(hosts, client, fleet, tmp_path) -> None:
    """`relay deploy` and RelayClient.deploy compile and load the source apart from the fleet first: a
    source that fails is refused with its positioned error, and nothing of it is deployed."""
    import re
    import subprocess
    import sys

    def relay(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "relay_workers.cli", *args], capture_output=True, text=True,
                              env=fleet.env, timeout=60)

    def listed() -> dict:
        return {s["name"]: (s["version"], s["owner"], s["status"]) for s in json.loads(relay("servers", "--json").stdout)["servers"]}

    deploy(client, COUNTER.format(name="kept"))
    assert client.call("kept", "incr", 4) == 4
    good = tmp_path / "good.relay"  # an @llvm handler that compiles is deployed, and runs compiled
    good.write_text(COUNTER.format(name="kept").replace("receive fn get()",
                                                        "@llvm\n    receive fn twice(x: number) { x * 2 }\n    receive fn get()"))
    assert relay("deploy", str(good)).stdout == "deployed kept (version 2)\n"
    assert client.call("kept", "twice", 21) == 42 and client.call("kept", "get")["count"] == 4
    before = listed()
    kept_version = before["kept"][0]
    refused = {  # file: (source, the error's line:col, kind and message)
        "spinner.relay": (SPINNER, r"4:\d+: compile error: @llvm spin: builtin clock\(\) is not supported by @llvm"),
        "initial.relay": ("server boom {\n state { n: 0, first: [1][5] }\n receive fn x() { 1 } }\n",
                          r"2:\d+: error: index 5 out of range for array of length 1"),
        "top.relay": ("server top { receive fn x() { 1 } }\nlet a = [1]\nerror(\"refused at load\")\n",
                      r"3:1: error: refused at load"),
        "message.relay": ("server chatty { receive fn x() { 1 } }\nsend(kept, \"incr\", 1)\n",
                          r"2:\d+: error: kept.incr: the top-level statements of a deployed source cannot call or "
                          r"send to servers"),
        # upgrades of the running server `kept`: it keeps its version, its state, and answers
        "kept_llvm.relay": (COUNTER.format(name="kept").replace("receive fn get()",
                                                                "@llvm\n    receive fn t() { clock() }\n    receive fn get()"),
                            r"7:\d+: compile error: @llvm t: builtin clock\(\) is not supported by @llvm"),
        "kept_state.relay": (COUNTER.format(name="kept").replace("log: [] }", "log: [], more: {}.x.y }"),
                             r"3:\d+: error: cannot read field .y. of null"),
    }
    seconds = {}
    for name, (source, expected) in refused.items():
        path = tmp_path / name
        path.write_text(source)
        started = time.monotonic()
        done = relay("deploy", str(path))
        seconds[name] = time.monotonic() - started
        print(f"{name}: exit {done.returncode} in {seconds[name]:.2f} s: {done.stderr.splitlines()[0] if done.stderr else ''}")
        assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr, done
        assert re.match(re.escape(str(path)) + ":" + expected, done.stderr), done.stderr
    endless = tmp_path / "endless.relay"  # the check runs within the server's time limit
    endless.write_text("server spin2 { receive fn x() { 1 } }\nwhile true { }\n")
    started = time.monotonic()
    done = relay("deploy", "--time-limit", "1", str(endless))
    seconds["endless"] = time.monotonic() - started
    print(f"endless.relay --time-limit 1: exit {done.returncode} in {seconds['endless']:.2f} s: {done.stderr.strip()}")
    assert done.returncode == 1 and done.stderr.startswith(f"{endless}:2:") and "time limit of 1 s exceeded" in done.stderr
    assert seconds["endless"] < 1 * 1.1 + 0.1 + 5  # the limit, and the process's start-up

    with pytest.raises(RelayError, match=r"^<deploy>:4:\d+: compile error: @llvm spin"):  # RelayClient.deploy
        client.deploy(SPINNER)
    assert listed() == before  # nothing of any refused source: no new server, no new version
    assert client.registry.version("kept") == kept_version
    assert client.call("kept", "incr", 1) == 5 and client.call("kept", "twice", 2) == 4

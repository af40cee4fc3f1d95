"""Busy compiled code never looks like a dead worker: it runs without the GIL, so the host's
heartbeat, inbox and other servers keep going (default worker command and beat, host TTL 3 s)."""

from __future__ import annotations

import statistics
import threading
import time

from conftest import run_relay

from .conftest import deploy, record

BURN = """
@llvm
fn burn(n: number) {
    let s = 0
    for i in 0..n { s = s + i % 3 }
    return s
}
"""

SERVERS = BURN + """
server spinner {
    state { runs: 0 }
    receive fn spin(n) {
        state.runs += 1
        burn(n)
    }
    receive fn runs() { state.runs }
}
server other {
    state { n: 0 }
    receive fn ping() {
        state.n += 1
        state.n
    }
}
"""


def iterations_for(seconds: float) -> float:
    """How many iterations of burn's loop take `seconds` on this machine (measured in-process)."""
    n = 2e7
    run_relay(BURN + "burn(1000)")  # compiled once: the timing below is the loop's
    started = time.monotonic()
    run_relay(BURN + f"burn({n:.0f})")
    return round(n * seconds / (time.monotonic() - started))


def expected_burn(n: float) -> float:
    full, rest = divmod(n, 3)
    return full * 3 + (1 if rest == 2 else 0)  # sum of i % 3 for i < n


def servers_info(client) -> dict[str, dict]:
    return {s["name"]: s for s in client.servers()}


def test_a_30_s_compiled_handler_while_its_worker_answers_other_calls(fleet, client) -> None:
    first = fleet.start("w1")
    deploy(client, SERVERS)
    fleet.start("w2")
    fleet.start_beat()
    assert {s["owner"] for s in client.servers()} == {first}
    client.deploy(SERVERS, time_limit=120)  # a message of spinner may run for two minutes
    n = iterations_for(30)
    reply: dict[str, object] = {}

    def spin() -> None:
        started = time.monotonic()
        reply["value"] = client.call("spinner", "spin", n, timeout=150)
        reply["seconds"] = time.monotonic() - started

    spinning = threading.Thread(target=spin)
    spinning.start()
    time.sleep(1.0)  # the handler is in its compiled loop
    latencies = []
    caller = fleet.client()
    while spinning.is_alive():
        started = time.monotonic()
        caller.call("other", "ping", timeout=10)
        latencies.append(time.monotonic() - started)
        time.sleep(0.02)
    spinning.join()
    caller.close()
    info = servers_info(client)
    p50, p99 = statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]
    record("30 s compiled handler, other server on its worker", handler_s=reply["seconds"],
           calls_meanwhile=len(latencies), other_p50_ms=1000 * p50, other_p99_ms=1000 * p99,
           restarts=info["spinner"]["restarts"] + info["other"]["restarts"],
           dead_letters=len(client.dead_letters()), spinner_runs=client.call("spinner", "runs"))
    assert reply["value"] == expected_burn(n) and reply["seconds"] > 20
    assert info["spinner"]["restarts"] == 0 and info["other"]["restarts"] == 0
    assert info["spinner"]["owner"] == first and info["other"]["owner"] == first
    assert client.dead_letters() == []
    assert client.call("spinner", "runs") == 1  # the message was applied once
    assert len(latencies) > 100 and p99 < 0.05


def test_a_solo_worker_running_a_15_s_compiled_eval_job_is_not_declared_dead(fleet, client) -> None:
    solo = fleet.start("w1", pool=["-P", "solo"])
    deploy(client, SERVERS)
    fleet.start_beat()
    n = iterations_for(15)
    outcome: dict[str, object] = {}

    def job() -> None:  # the only worker now: the job runs in the solo worker's main thread
        started = time.monotonic()
        outcome["result"] = client.eval(BURN + f"burn({n})", timeout=120, time_limit=60)
        outcome["seconds"] = time.monotonic() - started

    running = threading.Thread(target=job)
    running.start()
    time.sleep(2.0)
    fleet.start("w2")  # where the servers would go if w1 were declared dead
    running.join()
    result = outcome["result"]
    info = servers_info(client)
    record("15 s compiled eval job on a -P solo worker", seconds=outcome["seconds"], worker=result.worker,
           restarts=info["spinner"]["restarts"] + info["other"]["restarts"], owner_kept=info["other"]["owner"] == solo)
    assert result.error is None and result.value == expected_burn(n) and outcome["seconds"] > 10
    assert result.worker == solo
    assert info["spinner"]["restarts"] == 0 and info["other"]["restarts"] == 0
    assert info["spinner"]["owner"] == solo and info["other"]["owner"] == solo
    assert client.call("other", "ping", timeout=10) == 1

"""`relay up --demo`, the README's main job: a whole local fleet from one command, then stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from relay_workers.devfleet import ROOT


def test_relay_up_demo_runs_and_cleans_up(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    proc = subprocess.Popen([sys.executable, "-m", "relay_workers.cli", "up", "--demo", "--data", str(tmp_path)],
                            cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(out)
    assert proc.returncode == 0, out
    for line in ("deployed accounts (version 1)", 'accounts.open("ada", 100) -> 100', "balances -> {ada: 90, bob: 30}",
                 "insufficient funds in bob", "output: ada has 90; value: 120", "the supervisor restarted accounts",
                 '/v1/servers/accounts/balances -> 200 {"value":{"ada":90.0,"bob":30.0}}',
                 "relay up --demo: done"):
        assert line in out
    assert out.count("balances -> {ada: 90, bob: 30}") == 2  # the state survived the kill -9
    assert "exited (-9); starting it again" in out and "hosts 2;" in out  # and the worker came back
    time.sleep(0.5)
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftover == [], "relay up left processes behind"

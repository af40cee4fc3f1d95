"""The fleet's client side with no fleet: clear errors, and a producer that stays light."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from relay_workers.devfleet import ROOT, free_port

NOWHERE = f"redis://127.0.0.1:{free_port()}"


def relay(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RELAY_BROKER_URL=f"{NOWHERE}/0", RELAY_RESULT_BACKEND=f"{NOWHERE}/1",
               RELAY_STORE_URL=f"{NOWHERE}/2", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "relay_workers.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("command", [["call", "x", "y"], ["send", "x", "y"], ["servers"], ["eval", "-c", "1"],
                                     ["dead-letters"]])
def test_an_unreachable_fleet_is_exit_3_with_one_line(command) -> None:
    result = relay(*command)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"relay: cannot reach the fleet at {NOWHERE}/2")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_refused_deploy_changes_nothing_and_says_where(tmp_path) -> None:
    bad = tmp_path / "bad.relay"
    bad.write_text("server ok { }\nlet x = \n")
    result = relay("deploy", str(bad))
    assert result.returncode == 1 and result.stderr.startswith(f"{bad}:3:1: syntax error")
    none = tmp_path / "none.relay"
    none.write_text("fn f() { 1 }\n")
    result = relay("deploy", str(none))
    assert result.returncode == 1 and "declares no server" in result.stderr


def test_importing_the_client_loads_neither_the_worker_nor_llvm() -> None:
    code = ("import sys\nfrom relay_workers import RelayClient\n"
            "print(sorted(m for m in ('llvmlite', 'relay_lang.interpreter', 'relay_workers.host',"
            " 'relay_workers.celery') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr

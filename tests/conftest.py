"""Shared helpers: run Relay source in-process or through the `relay` command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_program

ROOT = Path(__file__).resolve().parent.parent

# Tests compile into a store of their own, never the user's ~/.cache/relay.
os.environ.setdefault("RELAY_CACHE_DIR", tempfile.mkdtemp(prefix="relay-test-cache-"))
RELAY = [sys.executable, "-m", "relay_lang"]


def eventually(probe: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """probe()'s first true value, asked every `interval` seconds; fails the test after `timeout` seconds.
    A probe that raises counts as not yet (a fleet between owners, a process still starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not there yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def run_relay(source: str, **kwargs) -> tuple[str, object]:
    """Runs source in-process; returns (stdout text, program value)."""
    out = io.StringIO()
    err = io.StringIO()
    interp = Interpreter(out=out, err=err, max_depth=kwargs.pop("max_depth", 10_000), tier=kwargs.pop("tier", "auto"))
    value = run_program(source, "test.relay", interp=interp, **kwargs)
    return out.getvalue(), value


def both(src: str, **kw) -> tuple[str, str]:
    """Runs src interpreted and compiled (`--tier llvm`); returns the two outputs (or error texts)."""
    results = []
    for tier in ("interpret", "llvm"):
        try:
            results.append(run_relay(src, tier=tier, **kw)[0])
        except RelayError as err:
            results.append(f"ERROR {err}")
    return results[0], results[1]


def relay_cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([*RELAY, *args], capture_output=True, text=True, input=stdin,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture
def run():
    def _run(source: str, **kwargs) -> str:
        return run_relay(source, **kwargs)[0]
    return _run


# The interpreter raises the recursion limit on first use; do it up front so
# that hypothesis does not see it change in the middle of a test.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000 * 6 + 2000))

"""`relay run` limits from the command line and the environment: Relay errors or one-line usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, relay_cli


def test_memory_limit_stops_a_runaway_allocation(tmp_path: Path) -> None:
    prog = tmp_path / "grow.relay"
    prog.write_text("let a = []\nwhile true { push(a, array(1000000, 1)) }\n")
    result = relay_cli("run", "--memory-limit", "200M", str(prog))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{prog}:2:") and "memory limit of 200M exceeded" in result.stderr
    bad = relay_cli("run", "--memory-limit", "lots", str(prog))
    assert bad.returncode == 2 and "not a size" in bad.stderr and "Traceback" not in bad.stderr


def test_a_bad_max_depth_in_the_environment_is_one_line(tmp_path: Path) -> None:
    prog = tmp_path / "one.relay"
    prog.write_text("print(1)\n")
    result = subprocess.run([sys.executable, "-m", "relay_lang", "run", str(prog)], capture_output=True, text=True,
                            env=dict(os.environ, RELAY_MAX_DEPTH="abc", PYTHONPATH=str(ROOT)), timeout=60)
    assert (result.returncode, result.stderr) == (1, "relay: RELAY_MAX_DEPTH='abc' is not a whole number\n")


def test_version_and_help_say_what_they_mean() -> None:
    version = relay_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("relay ")
    helped = " ".join(relay_cli("run", "--help").stdout.split())
    for words in ("SECONDS", "(default 10000", "256M, 2G; default $RELAY_MEMORY_LIMIT or 1G"):
        assert words in helped


def test_invalid_utf8_is_placed_at_its_line_and_column(tmp_path: Path) -> None:
    prog = tmp_path / "bad.relay"
    prog.write_bytes(b'print(1)\nlet s = "ab\xffc"\n')
    result = relay_cli("run", str(prog))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"{prog}:2:12: syntax error: invalid UTF-8 (byte 0xff): Relay source is UTF-8 text\n"

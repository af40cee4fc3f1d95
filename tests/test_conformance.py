"""Every program of the specification's conformance suite, through `relay run`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import relay_cli

HERE = Path(__file__).resolve().parent / "conformance"
PROGRAMS = sorted(HERE.glob("*.relay"))
ERRORS = sorted((HERE / "errors").glob("*.relay"))
# Programs whose every function compiles, so that --tier llvm must run them too.
ALL_COMPILED = {"numeric_llvm.relay", "arith.relay", "arrays.relay", "maps.relay", "strings.relay"}
TIERS = ["auto", "interpret", "llvm"]
LLVM_CANNOT_RUN = {"user_error.relay"}  # its function passes a string to error()


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_program_output(program: Path, tier: str) -> None:
    if tier == "llvm" and program.name not in ALL_COMPILED:
        pytest.skip("has functions outside the compiled subset (closures, strings, servers)")
    result = relay_cli("run", "--tier", tier, str(program))
    assert result.returncode == 0, result.stderr
    assert result.stdout == program.with_suffix(".out").read_text()
    assert result.stderr == ""


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("program", ERRORS, ids=lambda p: p.name)
def test_error_program(program: Path, tier: str) -> None:
    if tier == "llvm" and program.name in LLVM_CANNOT_RUN:
        pytest.skip("has a function outside the compiled subset")
    line, word = re.match(r"// expect-error: (\d+) (\w+)", program.read_text()).groups()
    result = relay_cli("run", "--tier", tier, str(program))
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert re.match(rf"\S*{re.escape(program.name)}:{line}:\d+: ", first), result.stderr
    assert word.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr

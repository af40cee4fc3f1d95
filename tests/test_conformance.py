"""Every program of the specification's conformance suite, through `relay run`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import relay_cli

HERE = Path(__file__).resolve().parent / "conformance"
PROGRAMS = sorted(HERE.glob("*.relay"))
ERRORS = sorted((HERE / "errors").glob("*.relay"))
NEEDS_LLVM = {"llvm_unsupported.relay"}  # compile errors of the LLVM tier (issue 3)


@pytest.mark.parametrize("tier", ["auto", "interpret"])
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_program_output(program: Path, tier: str) -> None:
    result = relay_cli("run", "--tier", tier, str(program))
    assert result.returncode == 0, result.stderr
    assert result.stdout == program.with_suffix(".out").read_text()
    assert result.stderr == ""


@pytest.mark.parametrize("program", ERRORS, ids=lambda p: p.name)
def test_error_program(program: Path) -> None:
    if program.name in NEEDS_LLVM:
        pytest.skip("@llvm compile errors arrive with the LLVM tier")
    line, word = re.match(r"// expect-error: (\d+) (\w+)", program.read_text()).groups()
    result = relay_cli("run", str(program))
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert re.match(rf"\S*{re.escape(program.name)}:{line}:\d+: ", first), result.stderr
    assert word.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr

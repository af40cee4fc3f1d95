"""The kinds of node are unions, so mypy holds every pass to handle every node of a kind.

The passes (resolver, codegen, compiler.infer, compiler.lower) match on `nodes.Expr` and
`nodes.Stmt` and end with `case _: assert_never(node)`: a pass that forgets a kind, or a
new kind no pass knows yet, fails `mypy -p relay_lang`.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

from relay_lang import nodes

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"Expr": nodes.Expr, "Stmt": nodes.Stmt, "Part": nodes.Part}


def concrete_nodes() -> list[type]:
    return [c for c in vars(nodes).values() if isinstance(c, type) and issubclass(c, nodes.Node) and c is not nodes.Node]


def test_every_node_class_is_of_exactly_one_kind() -> None:
    kinds_of = {c.__name__: [k for k, union in KINDS.items() if c in typing.get_args(union)] for c in concrete_nodes()}
    assert {name: kinds for name, kinds in kinds_of.items() if len(kinds) != 1} == {}
    assert sum(len(typing.get_args(union)) for union in KINDS.values()) == len(kinds_of)


def matcher(name: str, kind: str, classes: list[str]) -> str:
    cases = "".join(f"        case nodes.{c}():\n            return {c!r}\n" for c in classes)
    return (f"def {name}(node: nodes.{kind}) -> str:\n    match node:\n{cases}"
            "        case _:\n            assert_never(node)\n\n\n")


def test_mypy_reports_a_match_that_misses_a_node_kind(tmp_path: Path) -> None:
    expr = [c.__name__ for c in typing.get_args(nodes.Expr)]
    stmt = [c.__name__ for c in typing.get_args(nodes.Stmt)]
    source = ("from typing import assert_never\n\nfrom relay_lang import nodes\n\n\n"
              + matcher("every_expr", "Expr", expr) + matcher("every_stmt", "Stmt", stmt)
              + matcher("no_if_expr", "Expr", [c for c in expr if c != "IfExpr"])
              + matcher("no_server", "Stmt", [c for c in stmt if c != "ServerDecl"]))
    scratch = tmp_path / "scratch.py"
    scratch.write_text(source)
    run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), str(scratch)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    errors = [line.split(": error: ", 1)[1] for line in run.stdout.splitlines() if ": error: " in line]
    assert errors == ['Argument 1 to "assert_never" has incompatible type "IfExpr"; expected "Never"  [arg-type]',
                      'Argument 1 to "assert_never" has incompatible type "ServerDecl"; expected "Never"  [arg-type]'], run.stdout

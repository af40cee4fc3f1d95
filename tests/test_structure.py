"""The language core's modules depend one way: front end -> back ends -> session -> hosts.

Every import counts: module level, inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "relay_lang"

LAYERS = {
    "front end": ["_array", "errors", "lexer", "nodes", "parser", "resolver", "hashing", "builtin_table", "numeric",
                  "values", "ops", "budget"],
    "back ends": ["codegen", "compiler", "compiler.bounds", "compiler.cache", "compiler.engine", "compiler.infer", "compiler.jit",
                  "compiler.lower", "compiler.router"],
    "session": ["actors", "builtins", "interpreter"],
    "hosts": ["cli", "repl", "__main__"],
}
RANK = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The relay_lang modules that path imports, anywhere in the file."""
    here = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            elif (node.module or "").startswith("relay_lang"):
                base = node.module.removeprefix("relay_lang").lstrip(".")  # type: ignore[union-attr]
            else:
                continue
            names = [base] + [f"{base}.{a.name}".lstrip(".") for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("relay_lang").lstrip(".") for a in node.names if a.name.startswith("relay_lang")]
        else:
            continue
        found |= {n for n in names if n in RANK}
    return found - {module_name(path)}


def graph() -> dict[str, set[str]]:
    g = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}
    g.update({module_name(p): set() for p in PACKAGE.rglob("*.c")})  # C extensions import no Relay module
    return g


def test_every_module_has_a_layer() -> None:
    assert set(graph()) == set(RANK)


def test_imports_point_down_the_layers() -> None:
    upward = [f"{m} ({layer(m)}) imports {d} ({layer(d)})"
              for m, deps in graph().items() for d in deps if RANK[d] > RANK[m]]
    assert upward == []


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def layer(module: str) -> str:
    return list(LAYERS)[RANK[module]]

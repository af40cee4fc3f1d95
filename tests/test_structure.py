"""Modules depend one way, in two packages:

- the language core (relay_lang): front end -> back ends -> session -> hosts;
- the HTTP gateway (relay_workers/gateway/, FastAPI's "bigger applications" layout): its settings, schemas
  and errors -> the fleet handle -> the fleet index -> the services (metrics, JSON-RPC, the middleware,
  the dashboard's reads) -> the shared
  dependencies -> the routers -> the app factory -> serving. Routers depend on the shared dependencies,
  never on each other, and the app factory is the only module that imports them.

Every import counts: module level, inside functions and under TYPE_CHECKING.

And the project installs two top-level packages, relay_lang and relay_workers: no generic name
(`config`) that would collide with another project's in the same environment.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = {
    "front end": ["_array", "_abi", "errors", "lexer", "nodes", "parser", "resolver", "hashing", "builtin_table",
                  "numeric", "names", "values", "ops", "budget"],
    "back ends": ["emitter", "codegen", "compiler", "compiler.abi", "compiler.arrays", "compiler.bounds", "compiler.builder",
                  "compiler.cache", "compiler.engine", "compiler.frame", "compiler.gpu", "compiler.gpu_check", "compiler.gpu_runtime",
                  "compiler.infer", "compiler.jit",
                  "compiler.lower", "compiler.router", "compiler.support", "compiler.versioned"],
    "session": ["actors", "builtins", "interpreter"],
    "hosts": ["cli", "repl", "__main__"],
}
GATEWAY_LAYERS = {
    "foundation": ["config", "schemas", "errors"],
    "fleet handle": ["fleet"],
    "fleet index": ["index"],
    "services": ["metrics", "rpc", "middleware", "overview"],
    "dependencies": ["dependencies"],
    "routers": ["routers", "routers.servers", "routers.jsonrpc", "routers.health", "routers.docs", "routers.overview",
                "routers.dashboard"],
    "app factory": ["app"],
    "serving": ["serving", ""],  # "": the package itself (its __init__.py)
}
PACKAGES = {"relay_lang": LAYERS, "relay_workers.gateway": GATEWAY_LAYERS}
ROUTERS = [m for m in GATEWAY_LAYERS["routers"] if m != "routers"]


def rank(package: str) -> dict[str, int]:
    return {module: rank for rank, modules in enumerate(PACKAGES[package].values()) for module in modules}


def module_name(package: str, path: Path) -> str:
    """The module's name in its package ("" for the package's own __init__.py)."""
    parts = path.relative_to(ROOT / package.replace(".", "/")).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(package: str, path: Path) -> set[str]:
    """The modules of `package` that path imports, anywhere in the file."""
    module = module_name(package, path)
    full = f"{package}.{module}".rstrip(".").split(".")
    here = full if path.name == "__init__.py" else full[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.removeprefix(package).lstrip(".") for n in names if n == package or n.startswith(f"{package}.")}
    return (found & set(rank(package))) - {module}


def graph(package: str) -> dict[str, set[str]]:
    folder = ROOT / package.replace(".", "/")
    g = {module_name(package, p): imports(package, p) for p in folder.rglob("*.py")}
    g.update({module_name(package, p): set() for p in folder.rglob("*.c")})  # C extensions import no Relay module
    return g


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_has_a_layer(package: str) -> None:
    assert set(graph(package)) == set(rank(package))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_the_layers(package: str) -> None:
    ranks = rank(package)
    upward = [f"{m} ({layer(package, m)}) imports {d} ({layer(package, d)})"
              for m, deps in graph(package).items() for d in deps if ranks[d] > ranks[m]]
    assert upward == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    g = graph(package)
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


def test_gateway_routers_share_dependencies_and_only_the_app_factory_includes_them() -> None:
    g = graph("relay_workers.gateway")
    assert {r: g[r] & set(ROUTERS) for r in ROUTERS} == {r: set() for r in ROUTERS}  # no router imports another
    assert all("dependencies" in g[r] for r in ("routers.servers", "routers.jsonrpc", "routers.health", "routers.overview"))
    assert {m for m, deps in g.items() if deps & set(ROUTERS)} == {"app"}
    assert set(ROUTERS) <= g["app"]


def layer(package: str, module: str) -> str:
    return list(PACKAGES[package])[rank(package)[module]]


def test_the_only_top_level_packages_are_relay_lang_and_relay_workers() -> None:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert found["include"] == ["relay_lang*", "relay_workers*"]
    assert list((ROOT / "config").glob("**/*.py")) == []  # config/ holds samples, not a package

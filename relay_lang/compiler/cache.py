"""The compilation cache: in-process engines over a persistent store of object code.

Entries are keyed by `jit.module_key` (the group's canonical AST hashes with
their argument types and fastmath flags, the compiler's source, llvmlite and
LLVM versions, Python ABI, target and pipeline). Positions are not in it:
object code names nodes by ordinal, so a reformatted source hits the same entry.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class ObjectStore(Protocol):
    """Persistent object code by key: a local directory here; the fleet adds Redis.

    A store shared between processes may also offer `building(key)`, a context
    manager held while compiling, so that others wait instead of compiling twice.
    """

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


def default_cache_dir() -> Path:
    env = os.environ.get("RELAY_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "relay" / "objects"


class DirectoryStore:
    """One file per key; written to a temporary name and renamed, so readers never see half."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir()

    def get(self, key: str) -> bytes | None:
        try:
            return (self.path / f"{key}.o").read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path / f"{key}.o")
        except OSError:
            pass  # a read-only or full disk costs a recompilation next time, nothing more


@dataclass
class CacheStats:
    compiled: int = 0  # modules built by LLVM in this process
    store_loads: int = 0  # modules loaded from the persistent store instead
    memory_hits: int = 0  # modules already loaded in this process
    compile_seconds: list[float] = field(default_factory=list)
    load_seconds: list[float] = field(default_factory=list)


class CompileCache:
    """Two tiers behind one call: `get_or_build(key, build, load)`."""

    def __init__(self, store: ObjectStore | None) -> None:
        self.store = store
        self.loaded: dict[str, object] = {}
        self.stats = CacheStats()

    def get_or_build(self, key: str, build: Callable[[], bytes], load: Callable[[bytes], object]) -> object:
        module = self.loaded.get(key)
        if module is not None:
            self.stats.memory_hits += 1
            return module
        start = time.perf_counter()
        obj = self.store.get(key) if self.store is not None else None
        if obj is None and hasattr(self.store, "building"):
            # A shared store: wait for a process already compiling this key, then look again.
            with self.store.building(key):  # type: ignore[union-attr]
                obj = self.store.get(key)  # type: ignore[union-attr]
                if obj is None:
                    obj = self._build(key, build, start)
                    return self._remember(key, load(obj))
        if obj is not None:
            module = load(obj)
            self.stats.store_loads += 1
            self.stats.load_seconds.append(time.perf_counter() - start)
        else:
            obj = self._build(key, build, start)
            module = load(obj)
        return self._remember(key, module)

    def _build(self, key: str, build: Callable[[], bytes], start: float) -> bytes:
        obj = build()
        self.stats.compiled += 1
        self.stats.compile_seconds.append(time.perf_counter() - start)
        if self.store is not None:
            self.store.put(key, obj)
        return obj

    def _remember(self, key: str, module: object) -> object:
        self.loaded[key] = module
        return module

"""Canonical content hash of AST subtrees.

The hash covers what a node means, not how it was written: positions,
whitespace and comments are left out, so reformatting a function keeps its
hash, and any change to its code changes it. The LLVM cache keys on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

from .nodes import Node


def _serialise(value: object, out: list[bytes]) -> None:
    if isinstance(value, Node):
        out.append(b"N" + type(value).__name__.encode() + b"(")
        for f in dataclasses.fields(value):  # type: ignore[arg-type]
            if f.name != "pos":
                _serialise(getattr(value, f.name), out)
        out.append(b")")
    elif isinstance(value, tuple):
        out.append(b"T%d(" % len(value))
        for item in value:
            _serialise(item, out)
        out.append(b")")
    elif isinstance(value, bool):
        out.append(b"B1" if value else b"B0")
    elif isinstance(value, float):
        out.append(b"F" + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.append(b"S%d:" % len(data) + data)
    elif value is None:
        out.append(b"0")
    else:
        raise TypeError(f"cannot hash {type(value).__name__}")


def canonical_bytes(node: Node) -> bytes:
    out: list[bytes] = []
    _serialise(node, out)
    return b"".join(out)


def node_hash(node: Node) -> str:
    """sha256 hex digest of the node's canonical serialisation."""
    return hashlib.sha256(canonical_bytes(node)).hexdigest()

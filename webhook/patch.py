"""JSON Patch (RFC 6902) operations and RFC 6901 pointers (core layer).

Pointers are built from their unescaped parts by `jsonpointer`, so a key such as
`k8s.v1.cni.cncf.io/networks` becomes `k8s.v1.cni.cncf.io~1networks` without anyone
escaping by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
from jsonpointer import JsonPointer

OpName = Literal["add", "replace", "remove"]


@functools.lru_cache(maxsize=4096)
def pointer(*parts: str | int) -> str:
    """The RFC 6901 pointer to the member reached by `parts`, escaped as the RFC requires.

    Cached: the same few paths (container index, resource name) recur on every review."""
    return str(JsonPointer.from_parts([str(part) for part in parts]).path)


@dataclass(frozen=True, slots=True)
class Op:
    """One JSON Patch operation: add or replace a value, or remove one (units moved away)."""

    op: OpName
    path: str
    value: object = None

    def as_dict(self) -> dict[str, object]:
        if self.op == "remove":
            return {"op": self.op, "path": self.path}
        return {"op": self.op, "path": self.path, "value": self.value}


def serialize(ops: Sequence[Op]) -> bytes:
    """The patch document as compact JSON bytes, ops in the given (deterministic) order."""
    return orjson.dumps([op.as_dict() for op in ops])

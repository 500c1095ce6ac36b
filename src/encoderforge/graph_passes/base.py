"""Pass infrastructure: a pass rewrites an ONNX graph and reports what it did as named counts.

A pass = pattern, check, rewrite. `apply()` returns the new model and a `PassResult` whose `counts` say how
many times each rewrite applied, and whose `expected` says how many should have for this model (e.g.
Attention == layers, SkipLayerNormalization == 2 x layers). A shortfall is reported in the manifest and fails
the fusion tests; it is never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import onnx

from encoderforge.artifact import Artifact
from encoderforge.graph_passes.options import check_keys
from encoderforge.manifest import PassRecord
from encoderforge.registry import Registry


@dataclass(frozen=True, kw_only=True)
class PassContext:
    """What a pass may read besides the graph."""

    artifact: Artifact  # the source artifact (manifest, config.json, tokenizer)
    target: str  # cpu | cuda | tensorrt
    workdir: Path  # scratch directory for passes that work on files (onnxruntime's tools do)
    options: Mapping[str, Any] = field(default_factory=dict)  # pass settings (options.py); unknown keys refused

    def __post_init__(self) -> None:
        check_keys(self.options)


@dataclass(frozen=True)
class PassResult:
    name: str
    counts: Mapping[str, int] = field(default_factory=dict)
    expected: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)  # JSON-safe, pass-specific (written to the manifest)

    def shortfalls(self) -> dict[str, tuple[int, int]]:
        """{op: (expected, achieved)} for every expected count that was not reached."""
        return {k: (v, self.counts.get(k, 0)) for k, v in self.expected.items() if self.counts.get(k, 0) < v}

    def as_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "counts": dict(self.counts), "expected": dict(self.expected),
                "shortfalls": {k: {"expected": e, "achieved": a} for k, (e, a) in self.shortfalls().items()},
                "notes": list(self.notes), "details": dict(self.details)}

    def record(self) -> PassRecord:
        """This result as the manifest's pass record."""
        return PassRecord.from_json(self.as_manifest(), where=f"passes.{self.name}")


class GraphPass(Protocol):
    name: str
    in_place: bool  # True: mutates and returns the same ModelProto

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]: ...


PASSES: Registry[GraphPass] = Registry("graph pass")

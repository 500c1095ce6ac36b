"""The engine cache, build side: the key a new engine is filed under, and the entries kept beside it.

A serialized engine only runs on the GPU model and TensorRT version that built it, and only means anything
for the graph it was built from; its key (gpu, compute capability, TensorRT version, graph sha256s, build
settings) names its file, so a build with the same key on the same machine is a cache hit. Which recorded
engine runs here is the runtime's question: `encoderforge.runtime.backends.engine_lookup`.

Pure Python: no TensorRT, testable everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from encoderforge.artifact import Artifact
from encoderforge.manifest import EngineEntry
from encoderforge.runtime.backends.engine_lookup import (
    ENGINE_DIR,
    EngineKey,
    Lookup,
    Machine,
    engine_entries,
    find_engine,
    graph_hashes,
    mismatches,
)

__all__ = ["ENGINE_DIR", "EngineKey", "Lookup", "Machine", "engine_entries", "find_engine", "graph_hashes",
           "make_key", "mismatches", "replace_entry"]


def make_key(artifact: Artifact, machine: Machine, *, profiles: str, typing: str) -> EngineKey:
    onnx_sha, data_sha = graph_hashes(artifact)
    return EngineKey(machine.gpu, machine.compute_capability, machine.tensorrt, onnx_sha, data_sha, profiles, typing)


def replace_entry(entries: Sequence[EngineEntry], entry: EngineEntry) -> list[EngineEntry]:
    """The entries with `entry` added; one with the same file, or built from another graph (stale), drops out."""
    def graph(e: EngineEntry) -> tuple[object, object]:
        return e.key.get("onnx_sha256"), e.key.get("onnx_data_sha256")

    kept = [e for e in entries if e.file != entry.file and graph(e) == graph(entry)]
    return [*kept, entry]

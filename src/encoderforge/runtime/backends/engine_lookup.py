"""Engine lookup: which TensorRT engine in an artifact fits this machine, and why the others do not.

A serialized engine only runs on the GPU model and TensorRT version that built it, and only means anything
for the graph it was built from. Each engine is recorded in the manifest's `engines` list with its key:

    gpu name, compute capability, TensorRT version, sha256 of model.onnx (+ its external data file)
    + the build settings (profiles, typing) that change the engine but not what it computes

The key's digest names the file (`engines/trt-<digest>.plan`), so a build with the same key on the same
machine is a cache hit. At load time an engine is usable when gpu, compute capability, TensorRT version and
graph hashes all match; otherwise it is *stale* (the graph changed since) or *foreign* (another GPU or
TensorRT), and the reason is spelled out. Building and recording engines is `encoderforge.engines`.

Pure Python: no TensorRT, testable everywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from encoderforge.artifact import Artifact
from encoderforge.errors import ArtifactError
from encoderforge.manifest import EngineEntry

ENGINE_DIR = "engines"


@dataclass(frozen=True)
class Machine:
    """What an engine must match to run here."""

    gpu: str
    compute_capability: str
    tensorrt: str


@dataclass(frozen=True)
class EngineKey:
    gpu: str
    compute_capability: str
    tensorrt: str
    onnx_sha256: str
    onnx_data_sha256: str | None
    profiles: str  # canonical "1x16,8x128,32x384"
    typing: str  # strong | weak

    @property
    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def file(self) -> str:
        return f"{ENGINE_DIR}/trt-{self.digest}.plan"

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> EngineKey:
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as exc:
            raise ArtifactError(f"engine entry lacks key field {exc}; rebuild it with `encoderforge build-engine`") from exc


def graph_hashes(artifact: Artifact) -> tuple[str, str | None]:
    """sha256 of the artifact's model file and of its external data file (None without one), from the
    manifest's file table (checked against the files when the artifact was loaded with verify)."""
    files = artifact.manifest.files
    model = artifact.manifest.model_file
    if model not in files:
        raise ArtifactError(f"{model!r} is not in {artifact.path}'s file table; re-export the artifact")
    data = files.get(f"{model}.data")
    return files[model].sha256, None if data is None else data.sha256


def mismatches(key: EngineKey, machine: Machine, artifact: Artifact) -> list[str]:
    """Why an engine with this key cannot run here on this artifact's graph; empty when it can."""
    reasons = []
    if (key.gpu, key.compute_capability) != (machine.gpu, machine.compute_capability):
        reasons.append(f"built for {key.gpu} (compute {key.compute_capability}), this GPU is {machine.gpu} "
                       f"(compute {machine.compute_capability})")
    if key.tensorrt != machine.tensorrt:
        reasons.append(f"built with TensorRT {key.tensorrt}, this is TensorRT {machine.tensorrt}")
    onnx_sha, data_sha = graph_hashes(artifact)
    if (key.onnx_sha256, key.onnx_data_sha256) != (onnx_sha, data_sha):
        reasons.append(f"built from a graph with sha256 {key.onnx_sha256[:12]}, the artifact's "
                       f"{artifact.manifest.model_file} is now {onnx_sha[:12]} (stale: the graph changed since)")
    return reasons


def engine_entries(artifact: Artifact) -> tuple[EngineEntry, ...]:
    return artifact.manifest.engines


@dataclass(frozen=True)
class Lookup:
    """The usable engine entry (or None) and, for every other entry, why it was passed over."""

    entry: EngineEntry | None
    rejected: tuple[tuple[str, tuple[str, ...]], ...]

    def explain(self) -> str:
        if not self.rejected:
            return "the artifact has no TensorRT engine"
        return "; ".join(f"{file}: {', '.join(reasons)}" for file, reasons in self.rejected)


def find_engine(artifact: Artifact, machine: Machine) -> Lookup:
    """The newest engine entry that runs here, with the reasons the others do not."""
    rejected = []
    usable = None
    for entry in engine_entries(artifact):
        reasons = mismatches(EngineKey.from_manifest(entry.key), machine, artifact)
        if not (artifact.path / entry.file).is_file():
            reasons.append("the engine file is missing")
        if reasons:
            rejected.append((entry.file, tuple(reasons)))
        else:
            usable = entry
    return Lookup(usable, tuple(rejected))

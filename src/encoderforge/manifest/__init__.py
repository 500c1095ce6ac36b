"""The manifest: the typed contract of an artifact (read and written only through `Manifest`).

`Manifest.from_json(data)` checks every field and raises one `ArtifactError` naming the field, what it must be
and what it is (e.g. "manifest.json: field 'files' must be an object of name -> {sha256, bytes}, got list");
`to_json()` writes it back. Reports that are records of a run (validation, fidelity, versions) are kept as JSON
objects, checked to be objects; everything the code reads to run the artifact is a typed field.

Schema versions: 2 (this one) adds `backends`, pass `details` and the canonical precision vocabulary;
version 1 artifacts are read by `_upgrade_v1` (the same fields, without those).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from encoderforge.errors import ArtifactError
from encoderforge.manifest.enums import Precision, Target
from encoderforge.manifest.reader import EMPTY, FIX, JSON, Reader
from encoderforge.manifest.sections import (
    EmbeddingSettings,
    EngineEntry,
    FileEntry,
    OptimizedFrom,
    PassRecord,
    PositionRule,
    TensorSpec,
    TokenizerSettings,
    WithPast,
)
from encoderforge.manifest.selection import Candidate, LatencyPoint, Selection

__all__ = ["READABLE_VERSIONS", "SCHEMA_VERSION", "Candidate", "EmbeddingSettings", "EngineEntry", "FileEntry", "LatencyPoint",
           "Manifest", "OptimizedFrom", "PassRecord", "PositionRule", "Precision", "Selection", "Target", "TensorSpec", "TokenizerSettings",
           "WithPast"]

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


def _files(r: Reader) -> Mapping[str, FileEntry]:
    value = r.raw("files", required=True)
    if not isinstance(value, Mapping):
        r.fail("files", "an object of name -> {sha256, bytes}", value)
    return MappingProxyType({str(name): FileEntry.read(Reader(entry, f"files.{name}", r.source))
                             for name, entry in value.items()})


def _tensors(r: Reader, key: str) -> tuple[TensorSpec, ...]:
    return r.records(key, TensorSpec.read, "a list of {name, dtype, axes}", required=True)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """Everything an artifact's manifest.json says. Optional sections default to empty / None."""

    family: str
    task: str
    model_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feeds: Mapping[str, str]  # graph input -> tokenizers.Encoding field
    tokenizer: TokenizerSettings
    files: Mapping[str, FileEntry] = field(default_factory=lambda: MappingProxyType({}))
    schema_version: int = SCHEMA_VERSION
    model_type: str | None = None
    source: str | None = None
    external_data: bool = False
    padding_sensitive: bool = False
    embedding: EmbeddingSettings | None = None
    precision: Precision = Precision.FP32
    target: Target | None = None  # set by optimize
    exporter: str | None = None
    opset: int | None = None
    passes: tuple[PassRecord, ...] = ()
    validation: JSON = field(default_factory=lambda: EMPTY)
    versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    with_past: WithPast | None = None
    export_seconds: float | None = None
    fusion_shortfalls: JSON = field(default_factory=lambda: EMPTY)
    fidelity: JSON | None = None
    optimized_from: OptimizedFrom | None = None
    optimize_seconds: float | None = None
    engines: tuple[EngineEntry, ...] = ()  # TensorRT engines built for this graph (build-engine)
    backends: tuple[str, ...] = ()  # runtime backends known to load this graph; empty: unknown (derive)
    untrained_weights: tuple[str, ...] = ()  # head weights transformers initialised (export --allow-untrained-head)
    selection: Selection | None = None  # optimize --precision auto: the measured candidates and the runtime choice

    @classmethod
    def from_json(cls, data: object, *, source: str = "manifest.json") -> Manifest:
        """Check every field; one ArtifactError naming the first bad one."""
        r = Reader(data, "", source)
        version = r.raw("schema_version", required=True)
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ArtifactError(f"{source} has schema version {version!r}, this encoderforge reads "
                                f"{', '.join(map(str, READABLE_VERSIONS))}; {FIX} or install the matching encoderforge")
        if version == 1:
            r = Reader(_upgrade_v1(r.data), "", source)
        typed_precision = r.enum("precision", Precision) or Precision.FP32
        typed_target = r.enum("target", Target)
        embedding = r.raw("embedding", required=False)
        with_past = r.raw("with_past", required=False)
        origin = r.raw("optimized_from", required=False)
        selection = r.raw("selection", required=False)
        return cls(
            schema_version=SCHEMA_VERSION, family=r.string("family"), task=r.string("task"), model_file=r.string("model_file"),
            inputs=_tensors(r, "inputs"), outputs=_tensors(r, "outputs"), feeds=r.str_map("feeds", required=True),
            tokenizer=TokenizerSettings.read(r.sub("tokenizer")), files=_files(r), model_type=r.opt_string("model_type"),
            source=r.opt_string("source"), external_data=r.boolean("external_data"),
            padding_sensitive=r.boolean("padding_sensitive"),
            embedding=None if embedding is None else EmbeddingSettings.read(r.sub("embedding")),
            precision=typed_precision, target=typed_target, exporter=r.opt_string("exporter"), opset=r.opt_integer("opset"),
            passes=r.records("passes", PassRecord.read, "a list of pass records"),
            validation=r.obj("validation"), versions=r.str_map("versions"),
            with_past=None if with_past is None else WithPast.read(r.sub("with_past")),
            export_seconds=r.opt_float("export_seconds"), fusion_shortfalls=r.obj("fusion_shortfalls"),
            fidelity=r.opt_obj("fidelity"),
            optimized_from=None if origin is None else OptimizedFrom.read(r.sub("optimized_from")),
            optimize_seconds=r.opt_float("optimize_seconds"),
            engines=r.records("engines", EngineEntry.read, "a list of engine entries"), backends=r.strs("backends"),
            untrained_weights=r.strs("untrained_weights"),
            selection=None if selection is None else Selection.read(r.sub("selection")),
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "family": self.family, "model_type": self.model_type,
            "task": self.task, "source": self.source, "model_file": self.model_file,
            "external_data": self.external_data, "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs], "feeds": dict(self.feeds),
            "padding_sensitive": self.padding_sensitive, "tokenizer": self.tokenizer.to_json(),
            "embedding": None if self.embedding is None else self.embedding.to_json(),
            "precision": self.precision.value, "target": None if self.target is None else self.target.value,
            "exporter": self.exporter, "opset": self.opset, "passes": [p.to_json() for p in self.passes],
            "validation": dict(self.validation), "versions": dict(self.versions),
            "with_past": None if self.with_past is None else self.with_past.to_json(),
            "export_seconds": self.export_seconds, "fusion_shortfalls": dict(self.fusion_shortfalls),
            "fidelity": None if self.fidelity is None else dict(self.fidelity),
            "optimized_from": None if self.optimized_from is None else {
                "path": self.optimized_from.path, "model_sha256": self.optimized_from.model_sha256},
            "optimize_seconds": self.optimize_seconds, "engines": [e.to_json() for e in self.engines],
            "backends": list(self.backends), "untrained_weights": list(self.untrained_weights),
            "selection": None if self.selection is None else self.selection.to_json(),
            "files": {name: {"sha256": f.sha256, "bytes": f.bytes} for name, f in self.files.items()},
        }
        return data

    # ---- derived views ----

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def output_axes(self) -> dict[str, tuple[str | int, ...]]:
        return {spec.name: spec.axes for spec in self.outputs}

    def input_axes(self) -> dict[str, tuple[str | int, ...]]:
        return {spec.name: spec.axes for spec in self.inputs}

    @property
    def model_sha256(self) -> str | None:
        entry = self.files.get(self.model_file)
        return None if entry is None else entry.sha256

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())


def _upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 manifest in version-2 terms: the same fields; pass records gain empty `details`."""
    upgraded = dict(data)
    upgraded["schema_version"] = SCHEMA_VERSION
    passes = upgraded.get("passes")
    if isinstance(passes, list):
        upgraded["passes"] = [{**p, "details": p.get("details") or {}} if isinstance(p, Mapping) else p
                              for p in passes]
    return upgraded

"""The manifest: the typed contract of an artifact (read and written only through `Manifest`).

`Manifest.from_json(data)` checks every field and raises one `ArtifactError` naming the field, what it must be
and what it is (e.g. "manifest.json: field 'files' must be an object of name -> {sha256, bytes}, got list");
`to_json()` writes it back. Reports that are records of a run (validation, fidelity, versions) are kept as JSON
objects, checked to be objects; everything the code reads to run the artifact is a typed field.

Schema versions: 2 (this one) adds `backends`, pass `details` and the canonical precision vocabulary;
version 1 artifacts are read by `_upgrade_v1` (the same fields, without those).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, TypeVar

from typing_extensions import Self

from encoderforge.errors import ArtifactError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
FIX = "re-export the artifact"

T = TypeVar("T")
E = TypeVar("E", bound=Enum)
JSON = Mapping[str, Any]
_EMPTY: JSON = MappingProxyType({})


class Precision(str, Enum):
    """What an artifact's graph computes in. `numeric` is the class an engine builder cares about."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__  # equal to its value as a str, so hashed like it (dict keys, sets)

    @property
    def is_int8(self) -> bool:
        return self in (Precision.INT8_DYNAMIC, Precision.INT8_STATIC)

    @property
    def numeric(self) -> str:
        """fp32 | fp16 | int8: the element type class (TensorRT builder flags, validation floors)."""
        return "int8" if self.is_int8 else self.value

    @classmethod
    def parse(cls, value: object, *, what: str = "precision") -> Precision:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ArtifactError(f"unknown {what} {value!r}; choose one of: {choices}") from None


class Target(str, Enum):
    """Where an optimized graph is meant to run."""

    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__  # equal to its value as a str, so hashed like it (dict keys, sets)


class _Reader:
    """Typed reads of one JSON object; every failure names the dotted field."""

    def __init__(self, data: object, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, Mapping):
            self.fail("", "an object", data)
        self.data: Mapping[str, Any] = data  # type: ignore[assignment]

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where and key else self.where or key

    def fail(self, key: str, expected: str, value: object) -> None:
        got = "null" if value is None else type(value).__name__
        label = f"field {self.name(key)!r}" if self.name(key) else "the manifest"
        raise ArtifactError(f"{self.source}: {label} must be {expected}, got {got}; {FIX}")

    def raw(self, key: str, *, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise ArtifactError(f"{self.source}: field {self.name(key)!r} is missing; {FIX}")
            return None
        return self.data[key]

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str, required: bool, default: Any) -> Any:
        value = self.raw(key, required=required)
        if value is None and not required:
            return default
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.fail(key, expected, value)
        return value

    def string(self, key: str) -> str:
        return str(self._typed(key, (str,), "a string", True, None))

    def opt_string(self, key: str) -> str | None:
        value = self._typed(key, (str,), "a string or null", False, None)
        return None if value is None else str(value)

    def integer(self, key: str) -> int:
        return int(self._typed(key, (int,), "an integer", True, None))

    def opt_integer(self, key: str) -> int | None:
        value = self._typed(key, (int,), "an integer or null", False, None)
        return None if value is None else int(value)

    def opt_float(self, key: str) -> float | None:
        value = self._typed(key, (int, float), "a number or null", False, None)
        return None if value is None else float(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        return bool(self._typed(key, (bool,), "true or false", False, default))

    def obj(self, key: str, *, required: bool = False) -> JSON:
        value = self._typed(key, (Mapping,), "an object", required, _EMPTY)
        return MappingProxyType(dict(value))

    def opt_obj(self, key: str) -> JSON | None:
        value = self._typed(key, (Mapping,), "an object or null", False, None)
        return None if value is None else MappingProxyType(dict(value))

    def enum(self, key: str, kind: type[E]) -> E | None:
        value = self.opt_string(key)
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(str(e.value) for e in kind)
            raise ArtifactError(f"{self.source}: field {self.name(key)!r} is {value!r}, not one of {choices}; "
                                f"{FIX}") from None

    def sub(self, key: str) -> _Reader:
        return _Reader(self.raw(key, required=True), self.name(key), self.source)

    def records(self, key: str, parse: Callable[[_Reader], T], expected: str, *, required: bool = False) -> tuple[T, ...]:
        value = self.raw(key, required=required)
        if value is None and not required:
            return ()
        if not isinstance(value, list):
            self.fail(key, expected, value)
        return tuple(parse(_Reader(item, f"{self.name(key)}[{i}]", self.source)) for i, item in enumerate(value))

    def strs(self, key: str) -> tuple[str, ...]:
        value = self.raw(key, required=False) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "a list of strings", value)
        return tuple(value)

    def ints(self, key: str) -> tuple[int, ...]:
        value = self.raw(key, required=False) or []
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            self.fail(key, "a list of integers", value)
        return tuple(value)

    def str_map(self, key: str, *, required: bool = False) -> Mapping[str, str]:
        value = self.raw(key, required=required)
        if value is None and not required:
            return MappingProxyType({})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self.fail(key, "an object of name -> string", value)
        return MappingProxyType(dict(value))

    def int_map(self, key: str) -> Mapping[str, int]:
        value = self.raw(key, required=False) or {}
        if not isinstance(value, Mapping) or not all(isinstance(v, int) for v in value.values()):
            self.fail(key, "an object of name -> integer", value)
        return MappingProxyType(dict(value))


S = TypeVar("S", bound="_Section")


class _Section:
    """A typed manifest section; `from_json` reads one from plain JSON (as a writer produced it)."""

    @classmethod
    def read(cls, r: _Reader) -> Self:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: object, *, where: str) -> Self:
        return cls.read(_Reader(data, where, "manifest.json"))


@dataclass(frozen=True)
class TensorSpec(_Section):
    """A graph input or output: name, numpy dtype name, axes (a symbolic name per dynamic axis, else its size)."""

    name: str
    dtype: str
    axes: tuple[str | int, ...]

    @classmethod
    def read(cls, r: _Reader) -> TensorSpec:
        axes = r.raw("axes", required=True)
        if not isinstance(axes, list) or not all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in axes):
            r.fail("axes", "a list of axis names or sizes", axes)
        return cls(r.string("name"), r.opt_string("dtype") or "float32", tuple(axes))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "axes": list(self.axes)}

    @property
    def per_token(self) -> bool:
        """Whether axis 1 is the sequence (one row per token)."""
        return len(self.axes) > 1 and self.axes[1] == "sequence"


@dataclass(frozen=True)
class FileEntry(_Section):
    sha256: str
    bytes: int

    @classmethod
    def read(cls, r: _Reader) -> FileEntry:
        return cls(r.string("sha256"), r.integer("bytes"))


@dataclass(frozen=True, kw_only=True)
class TokenizerSettings(_Section):
    """What the runtime needs to reproduce the source tokenizer's truncation, padding, pairs and specials."""

    file: str
    max_length: int
    class_name: str | None = None
    padding_side: str | None = None
    truncation_side: str | None = None
    pad_token: str | None = None
    pad_token_id: int | None = None
    mask_token: str | None = None
    mask_token_id: int | None = None
    cls_token_id: int | None = None
    sep_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    unk_token_id: int | None = None
    special_ids: tuple[int, ...] = ()
    num_special_tokens_single: int | None = None
    num_special_tokens_pair: int | None = None
    model_input_names: tuple[str, ...] = ()

    _IDS = ("pad_token_id", "mask_token_id", "cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id",
            "unk_token_id", "num_special_tokens_single", "num_special_tokens_pair")

    @classmethod
    def read(cls, r: _Reader) -> TokenizerSettings:
        ints = {key: r.opt_integer(key) for key in cls._IDS}
        return cls(file=r.string("file"), max_length=r.integer("max_length"), class_name=r.opt_string("class"),
                   padding_side=r.opt_string("padding_side"), truncation_side=r.opt_string("truncation_side"),
                   pad_token=r.opt_string("pad_token"), mask_token=r.opt_string("mask_token"),
                   special_ids=r.ints("special_ids"), model_input_names=r.strs("model_input_names"), **ints)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "class": self.class_name, "max_length": self.max_length,
                "padding_side": self.padding_side, "truncation_side": self.truncation_side,
                "pad_token": self.pad_token, "pad_token_id": self.pad_token_id, "mask_token": self.mask_token,
                "mask_token_id": self.mask_token_id, "cls_token_id": self.cls_token_id,
                "sep_token_id": self.sep_token_id, "bos_token_id": self.bos_token_id,
                "eos_token_id": self.eos_token_id, "unk_token_id": self.unk_token_id,
                "special_ids": list(self.special_ids), "num_special_tokens_single": self.num_special_tokens_single,
                "num_special_tokens_pair": self.num_special_tokens_pair,
                "model_input_names": list(self.model_input_names)}


@dataclass(frozen=True, kw_only=True)
class EmbeddingSettings(_Section):
    """sentence-transformers pooling kept from 1_Pooling/config.json."""

    pooling: str | None
    normalize: bool = False
    max_seq_length: int | None = None
    source: str | None = None

    @classmethod
    def read(cls, r: _Reader) -> EmbeddingSettings:
        return cls(pooling=r.opt_string("pooling"), normalize=r.boolean("normalize"),
                   max_seq_length=r.opt_integer("max_seq_length"), source=r.opt_string("source"))

    def to_json(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "normalize": self.normalize, "max_seq_length": self.max_seq_length,
                "source": self.source}


@dataclass(frozen=True)
class PositionRule(_Section):
    """How the model numbers positions: from `first`, pads (pad_id) keeping padding_idx (RoBERTa) or not."""

    first: int
    pad_id: int | None

    @classmethod
    def read(cls, r: _Reader) -> PositionRule:
        return cls(r.integer("first"), r.opt_integer("pad_id"))


@dataclass(frozen=True, kw_only=True)
class WithPast(_Section):
    """The KV-cache graph of a text-generation artifact (export --with-past)."""

    model_file: str
    external_data: bool
    exporter: str
    num_layers: int
    num_heads: int
    head_dim: int
    positions: PositionRule
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    validation: JSON

    @classmethod
    def read(cls, r: _Reader) -> WithPast:
        return cls(model_file=r.string("model_file"), external_data=r.boolean("external_data"),
                   exporter=r.opt_string("exporter") or "torchscript", num_layers=r.integer("num_layers"),
                   num_heads=r.integer("num_heads"), head_dim=r.integer("head_dim"),
                   positions=PositionRule.read(r.sub("positions")),
                   inputs=r.records("inputs", TensorSpec.read, "a list of tensors", required=True),
                   outputs=r.records("outputs", TensorSpec.read, "a list of tensors", required=True),
                   validation=r.obj("validation", required=True))

    def to_json(self) -> dict[str, Any]:
        return {"model_file": self.model_file, "external_data": self.external_data, "exporter": self.exporter,
                "num_layers": self.num_layers, "num_heads": self.num_heads, "head_dim": self.head_dim,
                "positions": {"first": self.positions.first, "pad_id": self.positions.pad_id},
                "inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
                "validation": dict(self.validation)}


@dataclass(frozen=True, kw_only=True)
class PassRecord(_Section):
    """One graph pass as applied: counts vs expected, shortfalls, notes and pass-specific details."""

    name: str
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    expected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    shortfalls: JSON = field(default_factory=lambda: _EMPTY)
    notes: tuple[str, ...] = ()
    details: JSON = field(default_factory=lambda: _EMPTY)  # e.g. int8-static's calibration and sensitivity sweep, fp16's fp32 islands

    @classmethod
    def read(cls, r: _Reader) -> PassRecord:
        return cls(name=r.string("name"), counts=r.int_map("counts"), expected=r.int_map("expected"),
                   shortfalls=r.obj("shortfalls"), notes=r.strs("notes"), details=r.obj("details"))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "counts": dict(self.counts), "expected": dict(self.expected),
                "shortfalls": dict(self.shortfalls), "notes": list(self.notes), "details": dict(self.details)}


@dataclass(frozen=True, kw_only=True)
class EngineEntry(_Section):
    """A TensorRT engine recorded in the artifact: its file, its key (what it must match), its profiles."""

    file: str
    key: JSON
    profiles: tuple[JSON, ...] = ()
    precision: str | None = None
    build_seconds: float | None = None
    bytes: int | None = None
    timing_cache: str | None = None
    validation: JSON | None = None

    @classmethod
    def read(cls, r: _Reader) -> EngineEntry:
        return cls(file=r.string("file"), key=r.obj("key", required=True),
                   profiles=r.records("profiles", lambda p: p.data, "a list of profiles"),
                   precision=r.opt_string("precision"), build_seconds=r.opt_float("build_seconds"),
                   bytes=r.opt_integer("bytes"), timing_cache=r.opt_string("timing_cache"),
                   validation=r.opt_obj("validation"))

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "key": dict(self.key), "profiles": [dict(p) for p in self.profiles],
                "precision": self.precision, "build_seconds": self.build_seconds, "bytes": self.bytes,
                "timing_cache": self.timing_cache, "validation": None if self.validation is None
                else dict(self.validation)}


@dataclass(frozen=True)
class OptimizedFrom(_Section):
    path: str
    model_sha256: str

    @classmethod
    def read(cls, r: _Reader) -> OptimizedFrom:
        return cls(r.string("path"), r.string("model_sha256"))


def _files(r: _Reader) -> Mapping[str, FileEntry]:
    value = r.raw("files", required=True)
    if not isinstance(value, Mapping):
        r.fail("files", "an object of name -> {sha256, bytes}", value)
    return MappingProxyType({str(name): FileEntry.read(_Reader(entry, f"files.{name}", r.source))
                             for name, entry in value.items()})


def _tensors(r: _Reader, key: str) -> tuple[TensorSpec, ...]:
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
    validation: JSON = field(default_factory=lambda: _EMPTY)
    versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    with_past: WithPast | None = None
    export_seconds: float | None = None
    fusion_shortfalls: JSON = field(default_factory=lambda: _EMPTY)
    fidelity: JSON | None = None
    optimized_from: OptimizedFrom | None = None
    optimize_seconds: float | None = None
    engines: tuple[EngineEntry, ...] = ()  # TensorRT engines built for this graph (build-engine)
    backends: tuple[str, ...] = ()  # runtime backends known to load this graph; empty: unknown (derive)

    @classmethod
    def from_json(cls, data: object, *, source: str = "manifest.json") -> Manifest:
        """Check every field; one ArtifactError naming the first bad one."""
        r = _Reader(data, "", source)
        version = r.raw("schema_version", required=True)
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ArtifactError(f"{source} has schema version {version!r}, this encoderforge reads "
                                f"{', '.join(map(str, READABLE_VERSIONS))}; {FIX} or install the matching encoderforge")
        if version == 1:
            r = _Reader(_upgrade_v1(r.data), "", source)
        typed_precision = r.enum("precision", Precision) or Precision.FP32
        typed_target = r.enum("target", Target)
        embedding = r.raw("embedding", required=False)
        with_past = r.raw("with_past", required=False)
        origin = r.raw("optimized_from", required=False)
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
            "backends": list(self.backends),
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

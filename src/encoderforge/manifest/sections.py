"""The typed sections of a manifest (graph tensors, files, tokenizer settings, passes, engines, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from typing_extensions import Self

from encoderforge.manifest.reader import EMPTY, JSON, Reader


class Section:
    """A typed manifest section; `from_json` reads one from plain JSON (as a writer produced it)."""

    @classmethod
    def read(cls, r: Reader) -> Self:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: object, *, where: str) -> Self:
        return cls.read(Reader(data, where, "manifest.json"))


@dataclass(frozen=True)
class TensorSpec(Section):
    """A graph input or output: name, numpy dtype name, axes (a symbolic name per dynamic axis, else its size)."""

    name: str
    dtype: str
    axes: tuple[str | int, ...]

    @classmethod
    def read(cls, r: Reader) -> TensorSpec:
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
class FileEntry(Section):
    sha256: str
    bytes: int

    @classmethod
    def read(cls, r: Reader) -> FileEntry:
        return cls(r.string("sha256"), r.integer("bytes"))


@dataclass(frozen=True, kw_only=True)
class TokenizerSettings(Section):
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
    def read(cls, r: Reader) -> TokenizerSettings:
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
class EmbeddingSettings(Section):
    """sentence-transformers pooling kept from 1_Pooling/config.json."""

    pooling: str | None
    normalize: bool = False
    max_seq_length: int | None = None
    source: str | None = None

    @classmethod
    def read(cls, r: Reader) -> EmbeddingSettings:
        return cls(pooling=r.opt_string("pooling"), normalize=r.boolean("normalize"),
                   max_seq_length=r.opt_integer("max_seq_length"), source=r.opt_string("source"))

    def to_json(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "normalize": self.normalize, "max_seq_length": self.max_seq_length,
                "source": self.source}


@dataclass(frozen=True)
class PositionRule(Section):
    """How the model numbers positions: from `first`, pads (pad_id) keeping padding_idx (RoBERTa) or not."""

    first: int
    pad_id: int | None

    @classmethod
    def read(cls, r: Reader) -> PositionRule:
        return cls(r.integer("first"), r.opt_integer("pad_id"))


@dataclass(frozen=True, kw_only=True)
class WithPast(Section):
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
    def read(cls, r: Reader) -> WithPast:
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
class PassRecord(Section):
    """One graph pass as applied: counts vs expected, shortfalls, notes and pass-specific details."""

    name: str
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    expected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    shortfalls: JSON = field(default_factory=lambda: EMPTY)
    notes: tuple[str, ...] = ()
    details: JSON = field(default_factory=lambda: EMPTY)  # e.g. int8-static's calibration and sensitivity sweep, fp16's fp32 islands

    @classmethod
    def read(cls, r: Reader) -> PassRecord:
        return cls(name=r.string("name"), counts=r.int_map("counts"), expected=r.int_map("expected"),
                   shortfalls=r.obj("shortfalls"), notes=r.strs("notes"), details=r.obj("details"))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "counts": dict(self.counts), "expected": dict(self.expected),
                "shortfalls": dict(self.shortfalls), "notes": list(self.notes), "details": dict(self.details)}


@dataclass(frozen=True, kw_only=True)
class EngineEntry(Section):
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
    def read(cls, r: Reader) -> EngineEntry:
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
class OptimizedFrom(Section):
    path: str
    model_sha256: str

    @classmethod
    def read(cls, r: Reader) -> OptimizedFrom:
        return cls(r.string("path"), r.string("model_sha256"))

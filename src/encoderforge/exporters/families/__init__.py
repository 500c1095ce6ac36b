"""Model families: one file each, one `FamilySpec` registered per file.

A family says which graph inputs its models take, which task heads it has, how validation must treat it
(tolerance, position offset) and how to build a tiny test model and a real-size random one. No torch here:
specs are data; the exporter turns them into models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from encoderforge.errors import UnknownKeyError, UnsupportedError
from encoderforge.registry import Registry
from encoderforge.tasks import TASKS, TaskHead

TokenizerKind = Literal["byte-bpe", "unigram", "wordpiece"]
Exporter = Literal["torchscript", "dynamo"]

ALL_HEADS = tuple(TASKS)


@dataclass(frozen=True)
class FamilySpec:
    name: str
    model_types: tuple[str, ...]  # config.model_type values this family handles
    input_names: tuple[str, ...]  # graph inputs, in order
    heads: tuple[str, ...]  # canonical task names this family supports
    tokenizer_kind: TokenizerKind  # what the synthetic (test / benchmark) tokenizer is
    tiny_config: Mapping[str, Any]  # config kwargs for a 2-layer test model
    base_config: Mapping[str, Any]  # config kwargs for a real-size random model (benchmarks)
    # Both exporters validate every head of every family here (torch 2.13, transformers 5.23); TorchScript is
    # the default because it traces a model in about a second where dynamo takes ~30 s (tiny models).
    exporter: Exporter = "torchscript"
    tolerance: float = 1e-4  # max abs diff, fp32, vs PyTorch
    position_offset: int = 0  # RoBERTa family: positions start at padding_idx + 1
    # Outputs at real tokens change when the batch is padded (ConvBERT's span-based convolution reads padded
    # positions, in PyTorch too): the runtime then batches only texts of equal length.
    padding_sensitive: bool = False

    def head(self, task: str) -> TaskHead:
        head = TASKS.get(task)
        if head.name not in self.heads:
            raise UnsupportedError(
                f"family {self.name!r} has no {head.name!r} head; it has: {', '.join(self.heads)}"
            )
        return head

    def max_length(self, config: Any) -> int:
        """Longest sequence the model accepts: position table size minus the family's offset."""
        return int(config.max_position_embeddings) - self.position_offset


FAMILIES: Registry[FamilySpec] = Registry("model family")


def register(spec: FamilySpec) -> FamilySpec:
    unknown = [h for h in spec.heads if h not in TASKS]
    if unknown:
        raise ValueError(f"family {spec.name!r} names unknown heads {unknown}")
    return FAMILIES.register(spec.name, spec)


def family_for_model_type(model_type: str) -> FamilySpec:
    for spec in FAMILIES.values():
        if model_type in spec.model_types:
            return spec
    supported = sorted(t for _, s in FAMILIES.items() for t in s.model_types)
    raise UnknownKeyError(
        f"unsupported model_type {model_type!r} in config.json; supported: {', '.join(supported)}"
    )


def frozen(**kwargs: Any) -> Mapping[str, Any]:
    return MappingProxyType(kwargs)


# Importing the family modules registers them (one line per family).
from encoderforge.exporters.families import bert, camembert, convbert, rembert, roberta  # noqa: F401

"""Task heads: one entry each, with the Hugging Face pipeline name and a short alias.

Torch-free on purpose: the exporters use a head to build and trace the model, the runtime uses the same entry
to know the graph's outputs and post-processing. Adding a head is one `TASKS.register(...)` call here
(plus `runtime/pipelines/<task>.py` for its post-processing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from encoderforge.registry import Registry

# Symbolic (dynamic) axis names used in graphs and manifests.
BATCH, SEQUENCE, NUM_CHOICES = "batch", "sequence", "num_choices"


@dataclass(frozen=True)
class OutputSpec:
    """A graph output: its name (also the attribute of the transformers ModelOutput) and its axes.

    `axes` holds a symbolic name for every dynamic axis and None for a fixed one (labels, hidden size, vocab).
    """

    name: str
    axes: tuple[str | None, ...]


@dataclass(frozen=True)
class TaskHead:
    name: str
    aliases: tuple[str, ...]
    auto_class: str  # transformers auto class that builds this head for any registered family
    outputs: tuple[OutputSpec, ...]
    uses_pairs: bool = False  # validation feeds text pairs (question/context, prompt/choice)
    multiple_choice: bool = False  # inputs carry a num_choices axis: (batch, num_choices, sequence)
    config_overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def causal(self) -> bool:
        """A decoder head (causal mask, no KV cache in the plain graph)."""
        return bool(self.config_overrides.get("is_decoder", False))

    @property
    def input_axes(self) -> tuple[str, ...]:
        return (BATCH, NUM_CHOICES, SEQUENCE) if self.multiple_choice else (BATCH, SEQUENCE)


TASKS: Registry[TaskHead] = Registry("task head")


def _head(name: str, alias: str, auto_class: str, *outputs: OutputSpec, **options: Any) -> None:
    TASKS.register(name, TaskHead(name, (alias,), auto_class, outputs, **options), aliases=(alias,))


_per_token = (BATCH, SEQUENCE, None)
_head("feature-extraction", "embed", "AutoModel", OutputSpec("last_hidden_state", _per_token))
_head("fill-mask", "mlm", "AutoModelForMaskedLM", OutputSpec("logits", _per_token))
_head("text-classification", "cls", "AutoModelForSequenceClassification", OutputSpec("logits", (BATCH, None)))
_head("token-classification", "ner", "AutoModelForTokenClassification", OutputSpec("logits", _per_token))
_head(
    "question-answering",
    "qa",
    "AutoModelForQuestionAnswering",
    OutputSpec("start_logits", (BATCH, SEQUENCE)),
    OutputSpec("end_logits", (BATCH, SEQUENCE)),
    uses_pairs=True,
)
_head(
    "multiple-choice",
    "mc",
    "AutoModelForMultipleChoice",
    OutputSpec("logits", (BATCH, NUM_CHOICES)),
    uses_pairs=True,
    multiple_choice=True,
)
_head(
    "text-generation",
    "causal-lm",
    "AutoModelForCausalLM",
    OutputSpec("logits", _per_token),
    config_overrides=MappingProxyType({"is_decoder": True}),
)


def task_head(name_or_alias: str) -> TaskHead:
    """The head for a pipeline name or alias; an unknown one raises UnknownKeyError listing all heads."""
    return TASKS.get(name_or_alias)

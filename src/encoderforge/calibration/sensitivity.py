"""The accuracy budget: keep the most sensitive nodes in fp32 until the fidelity bound holds.

Metric (``--max-accuracy-drop``): ``accuracy_drop = 1 - agreement`` between the quantized and the fp32
graph's outputs on held-out text (`encoderforge.fidelity.fidelity_feeds`): the min cosine over long output
vectors (0.01: no token's hidden state or vocabulary row turns by more than cos^-1(0.99) = 8.1 degrees), the
1 - noise / (2 signal) pooled over every row for short ones (a few class or choice logits). It is meaningful on
random-weight models, where argmax agreement is not.

Sweep (each step a full quantization from one cached calibration, so ranges are collected once):

1. quantize everything; if the drop is within budget, done;
2. sensitivity: for every group (embeddings, each encoder layer, the task head; see `node_groups`),
   quantize with that group excluded and record how much the drop improves;
3. exclude groups greedily, most sensitive first, re-measuring after each, until the drop is within budget;
4. if even that fails, raise `ValidationError` naming the best drop reached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from encoderforge.calibration import progress
from encoderforge.errors import ValidationError

_LAYER = re.compile(r"(?:layers?|blocks?|h)[._/](\d+)(?:[._/]|$)")


def group_of(node_name: str) -> str:
    """The group a node belongs to: ``layer.N`` for encoder layers, ``embeddings``, or ``head``."""
    match = _LAYER.search(node_name)
    if match:
        return f"layer.{int(match.group(1))}"
    if "embed" in node_name.lower():
        return "embeddings"
    return "head"


def node_groups(model: onnx.ModelProto, op_types: Sequence[str]) -> dict[str, list[str]]:
    """{group: [node names]} for the quantizable nodes (op type in `op_types`), in graph order."""
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type in op_types:
            groups.setdefault(group_of(node.name), []).append(node.name)
    return groups


@dataclass
class SweepResult:
    model: onnx.ModelProto
    excluded_groups: list[str]
    excluded_nodes: list[str]
    drop: float
    full_drop: float
    sensitivity: dict[str, float] = field(default_factory=dict)  # group -> drop with that group excluded
    steps: list[dict[str, Any]] = field(default_factory=list)

    def as_manifest(self) -> dict[str, Any]:
        return {"metric": "accuracy_drop = 1 - agreement vs fp32 on held-out text (see encoderforge.fidelity)",
                "full_quantization_drop": self.full_drop, "final_drop": self.drop,
                "excluded_groups": self.excluded_groups, "excluded_nodes": len(self.excluded_nodes),
                "sensitivity": self.sensitivity, "steps": self.steps}


def fit_budget(
    quantize: Callable[[list[str]], onnx.ModelProto],
    measure: Callable[[onnx.ModelProto], float],
    groups: dict[str, list[str]],
    budget: float,
) -> SweepResult:
    """Run the sweep: `quantize(nodes_to_exclude)` -> model, `measure(model)` -> accuracy drop."""
    if budget < 0:
        raise ValidationError(f"max accuracy drop must be >= 0, got {budget}")
    full = quantize([])
    full_drop = measure(full)
    result = SweepResult(full, [], [], full_drop, full_drop, steps=[{"excluded": [], "drop": full_drop}])
    if full_drop <= budget:
        return result
    sensitivity: dict[str, float] = {}
    for group in progress(list(groups), desc="sensitivity sweep", total=len(groups)):
        sensitivity[group] = measure(quantize(list(groups[group])))
    result.sensitivity = sensitivity
    order = sorted(groups, key=lambda g: sensitivity[g])  # lowest drop when excluded = most sensitive
    excluded: list[str] = []
    best: tuple[float, onnx.ModelProto, list[str]] = (full_drop, full, [])
    for group in progress(order, desc="keeping sensitive groups in fp32", total=len(order)):
        excluded.append(group)
        nodes = [n for g in excluded for n in groups[g]]
        model = quantize(nodes)
        drop = measure(model)
        result.steps.append({"excluded": list(excluded), "drop": drop})
        if drop < best[0]:
            best = (drop, model, list(excluded))
        if drop <= budget:
            result.model, result.drop, result.excluded_groups, result.excluded_nodes = model, drop, list(excluded), nodes
            return result
    raise ValidationError(
        f"cannot meet max accuracy drop {budget:g}: full INT8 drop {full_drop:.4g}, best {best[0]:.4g} with "
        f"{', '.join(best[2]) or 'nothing'} kept in fp32; relax --max-accuracy-drop or use fp16"
    )

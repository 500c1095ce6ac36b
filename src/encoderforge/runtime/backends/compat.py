"""Which engines can read a graph: contrib ops (com.microsoft) are ONNX Runtime's own.

    graph nodes' domains ──► {"", "ai.onnx"} only          ──► every engine
                         └─► com.microsoft (fused Attention,  ──► onnxruntime-* only
                             SkipLayerNormalization, ...)

`engines_for(graph)` is what `optimize` records in the manifest (key `engines`); `refusal(backend, graph)`
is the one-line reason a backend that cannot read the graph gives before loading it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
ORT_ENGINES = ("onnxruntime-cpu", "onnxruntime-cuda")
STANDARD_ONLY_ENGINES = ("openvino", "tensorrt")
ENGINES = ORT_ENGINES + STANDARD_ONLY_ENGINES


@dataclass(frozen=True)
class GraphOps:
    """The ops of a graph outside the standard ONNX domains, as `domain::op_type` -> count."""

    contrib: tuple[tuple[str, int], ...]

    @property
    def standard_only(self) -> bool:
        return not self.contrib

    def describe(self, limit: int = 4) -> str:
        shown = ", ".join(f"{name} x{count}" for name, count in self.contrib[:limit])
        more = len(self.contrib) - limit
        return shown + (f" and {more} more" if more > 0 else "")


def graph_ops(graph: onnx.ModelProto) -> GraphOps:
    """Contrib ops of the main graph and of its subgraphs (If / Loop bodies) and local functions."""
    counts: Counter[str] = Counter()
    local = {(f.domain, f.name) for f in graph.functions}
    pending = [graph.graph]
    for function in graph.functions:
        counts.update(f"{n.domain}::{n.op_type}" for n in function.node
                      if n.domain not in STANDARD_DOMAINS and (n.domain, n.op_type) not in local)
    while pending:
        current = pending.pop()
        for node in current.node:
            if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local:
                counts[f"{node.domain}::{node.op_type}"] += 1
            pending.extend(a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH)
            for attribute in node.attribute:
                pending.extend(attribute.graphs)
    return GraphOps(tuple(sorted(counts.items())))


def read_ops(model_path: str | Path) -> GraphOps:
    """graph_ops of a graph file, without loading its external weights."""
    return graph_ops(onnx.load(str(model_path), load_external_data=False))


def engines_for(graph: onnx.ModelProto) -> list[str]:
    """The backends that can load this graph, in the order of ENGINES."""
    return list(ENGINES) if graph_ops(graph).standard_only else list(ORT_ENGINES)


def refusal(backend: str, ops: GraphOps) -> str | None:
    """None when `backend` can read a graph with these ops, else the one-line reason it cannot."""
    if backend in ORT_ENGINES or ops.standard_only:
        return None
    return (f"backend {backend!r} reads standard ONNX ops only, and this graph has ONNX Runtime contrib ops "
            f"({ops.describe()}); load it with backend 'onnxruntime-cpu', or give this backend the plain export (or an "
            "artifact optimized with `--target tensorrt`, which keeps standard ops)")

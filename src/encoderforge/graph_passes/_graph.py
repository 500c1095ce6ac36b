"""Small helpers over an ONNX GraphProto: who produces / consumes a value, constant lookup, dead-node removal.

Passes match patterns with these instead of a god class: build a `GraphIndex`, walk producers and consumers,
collect the nodes to remove and the nodes to add, then `commit()` (which re-sorts topologically and drops
nodes whose outputs nobody reads).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

MS_DOMAIN = "com.microsoft"


class GraphIndex:
    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.graph_outputs = {o.name for o in graph.output}
        self._names: set[str] = {n.name for n in graph.node}
        self._counter = 0

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and not node.domain:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_float", "value_int"):
                    return np.array(onnx.helper.get_attribute_value(attr))
                if attr.name in ("value_floats", "value_ints"):
                    return np.array(onnx.helper.get_attribute_value(attr))
        return None

    def scalar(self, name: str) -> float | None:
        value = self.constant(name)
        if value is None or value.size != 1:
            return None
        return float(value.reshape(()))

    def parent(self, node: onnx.NodeProto, index: int, op_type: str | None = None) -> onnx.NodeProto | None:
        if index >= len(node.input):
            return None
        found = self.producer.get(node.input[index])
        if found is None or (op_type is not None and found.op_type != op_type):
            return None
        return found

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.graph_outputs:
            return None
        return users[0]

    def fresh(self, base: str) -> str:
        self._counter += 1
        name = f"ef/{base}_{self._counter}"
        while name in self._names or name in self.producer or name in self.initializers:
            self._counter += 1
            name = f"ef/{base}_{self._counter}"
        self._names.add(name)
        return name

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        tensor = numpy_helper.from_array(value, name)
        self.graph.initializer.append(tensor)
        self.initializers[name] = tensor
        return name

    def ancestors(self, name: str, limit: int = 400) -> set[str]:
        """Op types and graph-input names upstream of `name` (bounded walk)."""
        seen: set[str] = set()
        found: set[str] = set()
        stack = [name]
        while stack and len(seen) < limit:
            value = stack.pop()
            if value in seen:
                continue
            seen.add(value)
            node = self.producer.get(value)
            if node is None:
                found.add(f"input:{value}")
                continue
            found.add(node.op_type)
            stack.extend(i for i in node.input if i)
        return found


def commit(graph: onnx.GraphProto, remove: Iterable[onnx.NodeProto], add: Iterable[onnx.NodeProto]) -> None:
    """Remove and add nodes, then drop dead nodes and unused initializers and sort topologically."""
    doomed = {id(n) for n in remove}
    nodes = [n for n in graph.node if id(n) not in doomed] + list(add)
    nodes = _live(graph, nodes)
    nodes = sorted_nodes(graph, nodes)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _live(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    needed = {o.name for o in graph.output}
    producer = {out: n for n in nodes for out in n.output}
    live: set[int] = set()
    stack = list(needed)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in live:
            continue
        live.add(id(node))
        stack.extend(i for i in node.input if i)
    return [n for n in nodes if id(n) in live]


def sorted_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto], *,
                 unproduced_ok: bool = False) -> list[onnx.NodeProto]:
    """`nodes` in an order where every input is produced before use (stable otherwise). With
    `unproduced_ok`, a value no node produces counts as available (e.g. an outer-scope name); without, it is
    a dangling input. A cycle or dangling input raises ValueError naming a node."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    produced = {out for node in nodes for out in node.output}
    pending = list(nodes)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available or (unproduced_ok and i not in produced) for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a dangling input near node {rest[0].name!r}")
        pending = rest
    return ordered


def topological_sort(graph: onnx.GraphProto) -> None:
    """Sort the graph's nodes in place so every input is produced before use."""
    ordered = sorted_nodes(graph, list(graph.node), unproduced_ok=True)
    del graph.node[:]
    graph.node.extend(ordered)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for node in model.graph.node:
        counts[node.op_type] += 1
    return dict(counts)

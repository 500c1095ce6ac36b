"""Q/DQ placement that onnxruntime's CPU kernels actually fuse (used by the int8-static pass for `cpu`).

onnxruntime turns a QDQ graph into integer kernels node unit by node unit. For a MatMul with a constant
weight and an fp32 output (no Q after it) the unit is

    x ─QuantizeLinear─DequantizeLinear─┐                          x ─QuantizeLinear─┐
                       W_int8 ─DequantizeLinear─MatMul─►   ==>   W_int8 ─MatMulIntegerToFloat─►

and a unit is formed only when **each DequantizeLinear feeds that one node**. ORT's quantizer shares one
Q/DQ pair among every consumer of a tensor, so the Q, K and V projections (three MatMuls reading one
LayerNorm output) form no unit: they run as a runtime DequantizeLinear of their int8 weights (every call)
plus an fp32 MatMul, slower than not quantizing at all. `dedicate_dequantize` gives each consumer its own
DequantizeLinear (the Q stays shared: the tensor is quantized once).

Activation x activation MatMuls (attention scores Q·Kᵀ and P·V when attention is not fused; ConvBERT's
dynamic convolution) have no int8 weight to gain from and lose the most accuracy: `constant_weight_nodes`
lists the MatMul / Gemm / Conv nodes worth quantizing, and the pass excludes the others on CPU.
"""

from __future__ import annotations

import onnx

from encoderforge.graph_passes._graph import GraphIndex


def constant_weight_nodes(model: onnx.ModelProto, op_types: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(nodes of `op_types` with a constant input 1 (the weight), the others), by node name."""
    index = GraphIndex(model.graph)
    constant = {i.name for i in model.graph.initializer}
    with_weight: list[str] = []
    without: list[str] = []
    for node in model.graph.node:
        if node.op_type not in op_types or len(node.input) < 2:
            continue
        weight = node.input[1]
        producer = index.producer.get(weight)
        is_constant = weight in constant or (producer is not None and producer.op_type == "Constant")
        (with_weight if is_constant else without).append(node.name)
    return with_weight, without


def dedicate_dequantize(model: onnx.ModelProto) -> int:
    """Give every consumer of a shared activation DequantizeLinear its own copy. Returns the copies made."""
    graph = model.graph
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))
    outputs = {o.name for o in graph.output}
    copies = 0
    nodes = list(graph.node)
    rebuilt: list[onnx.NodeProto] = []
    for node in nodes:
        rebuilt.append(node)
        users = consumers.get(node.output[0], []) if node.op_type == "DequantizeLinear" else []
        if len(users) < 2 or node.output[0] in outputs:
            continue
        for number, (user, position) in enumerate(users[1:], start=1):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = f"{node.name or node.output[0]}_for_{number}"
            copy.output[0] = f"{node.output[0]}_for_{number}"
            user.input[position] = copy.output[0]
            rebuilt.append(copy)
            copies += 1
    del graph.node[:]
    graph.node.extend(rebuilt)
    return copies

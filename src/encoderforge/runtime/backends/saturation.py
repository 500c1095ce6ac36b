"""Whether this CPU computes a graph's int8 weights correctly: the check both CPU backends make before loading.

x86 CPUs without VNNI / AMX (AVX2, AVX-512 without VNNI) multiply u8 x s8 with vpmaddubsw, which adds each pair
of products in int16: with weights over 7 bits (|w| > 64) the sums saturate, in onnxruntime's kernels and in
OpenVINO's alike (measured on an emulated AVX2 CPU: tiny CamemBERT / RemBERT relative error 0.05 / 0.11 on both
engines, against 0.012 / 0.007 with the same Q/DQ computed in float). The passes quantize with 7-bit weights
on such CPUs; a graph quantized with 8-bit weights elsewhere (a VNNI machine, a GPU rule set) is refused here.

    saturation_refusal(model_path[, graph])              -> None, or the one-line reason and the fix
    saturation_refusal(model_path, integer_kernels=False) -> None unless the graph has integer ops of its own
                                                           (onnxruntime with optimizations off runs Q/DQ in float)
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

from encoderforge.cpu import current_cpu

SEVEN_BIT = 64  # reduce_range's s8 weights lie in [-64, 64]
# ops whose kernels multiply integers whatever the session's optimization level
INTEGER_OPS = frozenset({"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul",
                         "QAttention", "QGemm", "QLinearConv", "ConvInteger"})


def saturation_refusal(model_path: Path, graph: onnx.ModelProto | None = None, *,
                       integer_kernels: bool = True) -> str | None:
    """None when this CPU runs the graph's int8 products exactly (VNNI / AMX / ARM, or weights within 7 bits);
    else why not. `graph`: the file's graph without external data, where the caller has read it already.
    `integer_kernels=False`: the engine runs Q/DQ pairs in float, so only integer ops count."""
    cpu = current_cpu()
    if cpu.int8_without_saturation:
        return None
    if graph is None:
        graph = onnx.load(str(model_path), load_external_data=False)
    if not integer_kernels and not any(node.op_type in INTEGER_OPS for node in graph.graph.node):
        return None
    found = _full_range_weight(graph, model_path.parent)
    if found is None:
        return None
    name, peak = found
    return (f"its int8 weights use the full 8-bit range ({name!r} reaches {peak}; quantized for a CPU "
            f"with VNNI / AMX or for a GPU), and this CPU ({cpu.model}, {cpu.kind}) has no VNNI, so its u8 x s8 "
            "products saturate in int16 and the outputs would be wrong; re-run `encoderforge optimize` on this "
            "machine (it quantizes with 7-bit weights here), or load the fp32 artifact")


def _full_range_weight(graph: onnx.ModelProto, base_dir: Path) -> tuple[str, int] | None:
    """The first int8 weight matrix (2-D or more: not a scale or zero point) beyond 7 bits, and its peak |w|."""
    for tensor in graph.graph.initializer:
        if tensor.data_type != onnx.TensorProto.INT8 or len(tensor.dims) < 2:
            continue
        values = numpy_helper.to_array(tensor, str(base_dir))
        peak = max(int(values.max(initial=0)), -int(values.min(initial=0)))
        if peak > SEVEN_BIT:
            return tensor.name, peak
    return None


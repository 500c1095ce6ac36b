"""INT8 dynamic quantization (weights int8 ahead of time, activations quantized per call), CPU-aware.

    MatMul(x, W) ─► DynamicQuantizeLinear(x) ─ MatMulInteger(x_q, W_q) ─ scale   (ORT fuses it into
                                                                              DynamicQuantizeMatMul at load)

Defaults chosen from the CPU that will run it (override through the optimize options):
- reduce_range: on x86 without VNNI (AVX2 / AVX-512 without VNNI), u8 x s8 products go through vpmaddubsw,
  whose int16 intermediate saturates; 7-bit weights avoid it. With VNNI (avx512_vnni / avx_vnni / amx) the
  dot product accumulates in int32 and full 8-bit range is safe and more accurate.
- per_channel: one scale per output column of each weight; costs nothing measurable in DynamicQuantizeMatMul
  and roughly halves the weight quantization error.
- only MatMuls with a constant weight (MatMulConstBOnly): activation x activation products (ConvBERT's
  dynamic convolution) stay fp32; quantizing them costs accuracy and buys nothing.
- DefaultTensorType FLOAT: ORT's quantizer cannot type the outputs of contrib ops in a fused graph (no shape
  inference for them) and stops with "Unable to find data type for weight_name=..."; telling it the default
  type avoids that.
"""

from __future__ import annotations

import logging

import onnx

from encoderforge.cpu import current_cpu
from encoderforge.graph_passes._graph import op_counts
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.options import DynamicInt8Options
from encoderforge.onnx_files import LARGE_GRAPH_BYTES, PROTOBUF_LIMIT, weight_bytes

log = logging.getLogger(__name__)


def has_vnni() -> bool:
    """True where int8 dot products accumulate without int16 saturation (VNNI / AMX), or on ARM."""
    return current_cpu().int8_without_saturation


class QuantizeDynamic:
    name = "int8-dynamic"
    in_place = False

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        options = DynamicInt8Options.read(context.options)
        reduce_range = (not has_vnni()) if options.reduce_range is None else bool(options.reduce_range)
        per_channel = bool(options.per_channel)
        candidates = [n for n in model.graph.node if n.op_type == "MatMul"]
        source = context.workdir / "int8-dynamic-input.onnx"
        target = context.workdir / "int8-dynamic-output.onnx"
        large = model.ByteSize() > LARGE_GRAPH_BYTES if weight_bytes(model) < PROTOBUF_LIMIT else True
        onnx.save_model(model, str(source), save_as_external_data=large, all_tensors_to_one_file=True,
                        location=source.name + ".data")
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
            reduce_range=reduce_range, op_types_to_quantize=["MatMul", "Attention"], use_external_data_format=large,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
        )
        quantized = onnx.load(str(target))
        after = op_counts(quantized)
        counts = {
            "MatMulInteger": after.get("MatMulInteger", 0) + after.get("DynamicQuantizeMatMul", 0),
            "QAttention": after.get("QAttention", 0),
            "MatMul (fp32, kept)": after.get("MatMul", 0),
        }
        weight_matmuls = sum(1 for n in candidates if _has_constant_input(model, n))
        expected = {"MatMulInteger": weight_matmuls}
        notes = ((f"reduce_range={reduce_range} ({'VNNI' if has_vnni() else 'no VNNI'} on this CPU), "
                  f"per_channel={per_channel}, weights int8 (s8), activations u8"),)
        return quantized, PassResult(self.name, counts, expected, notes, details={"reduce_range": reduce_range})


def _has_constant_input(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    names = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return len(node.input) > 1 and (node.input[1] in names or node.input[1] in constants)


PASSES.register(QuantizeDynamic.name, QuantizeDynamic())

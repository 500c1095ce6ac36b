"""Annotate the graph with inferred shapes (onnx shape inference with data propagation).

Not a fusion, but a precondition of several: onnxruntime's session-level SkipLayerNormalization fusion only
fires where both Add inputs have known 3-D shapes, and a standard export carries no value_info, so without
this pass the CPU session leaves every Add + LayerNormalization unfused. Not in the CPU pipelines: with it,
roberta-base fp32 measured ~8% slower on CPU (the SkipLayerNorm it enables is slower there); available for
targets and experiments that want it. onnx's inference is used (not ORT's
symbolic one, which fails on standard exports). Skipped above 1.8 GB (the in-memory API cannot hold it).
"""

from __future__ import annotations

import onnx

from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.onnx_files import LARGE_GRAPH_BYTES, weight_bytes


class InferShapes:
    name = "infer-shapes"
    in_place = False

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        if weight_bytes(model) > LARGE_GRAPH_BYTES:
            return model, PassResult(self.name, {}, {}, ("skipped: graph above 1.8 GB",))
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        ranked = sum(1 for v in inferred.graph.value_info if v.type.tensor_type.HasField("shape"))
        return inferred, PassResult(self.name, {"value_info": ranked}, {}, ())


PASSES.register(InferShapes.name, InferShapes())

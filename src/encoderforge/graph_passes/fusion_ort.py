"""SkipLayerNormalization, (Bias)Gelu and EmbedLayerNormalization, by ONNX Runtime's transformer optimizer.

    Add(x, skip) ─ LayerNormalization            ─► SkipLayerNormalization(x, skip, γ, β[, bias])
    MatMul ─ Add(bias) ─ Gelu / erf formula      ─► MatMul ─ BiasGelu(x, bias)
    Gather(words) + Gather(positions) + ... ─ LN ─► EmbedLayerNormalization (where ORT recognizes it)

Reused as is where it matches (it does, for every family here); called with model_type "bert", num_heads and
hidden_size from config.json, opt_level 0 (the session optimizes at load time anyway) and its attention fusion
off (ours runs first and covers the transformers-5 mask patterns it misses). ORT's symbolic shape inference is
not needed by these fusions and is not run, so standard exports do not trip over it.
"""

from __future__ import annotations

import logging

import onnx

from encoderforge.graph_passes._graph import MS_DOMAIN, op_counts
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.expectations import GELU_OPS, attention_heads, expected_counts
from encoderforge.graph_passes.options import OrtFusionOptions


class OrtFusions:
    name = "ort-fusions"
    in_place = False

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        config = context.artifact.config()
        options = FusionOptions("bert")
        options.enable_attention = False
        options.enable_embed_layer_norm = bool(OrtFusionOptions.read(context.options).embed_layer_norm)
        before = op_counts(model)
        quiet = logging.getLogger("onnxruntime.transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            optimizer = optimize_model(
                model, model_type="bert", num_heads=attention_heads(context.artifact),
                hidden_size=int(config["hidden_size"]), optimization_options=options, opt_level=0,
            )
        finally:
            quiet.setLevel(level)
        fused = optimizer.model
        if any(n.domain == MS_DOMAIN for n in fused.graph.node) and not any(
                o.domain == MS_DOMAIN for o in fused.opset_import):
            fused.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))  # ORT's optimizer leaves it out
        after = op_counts(fused)
        counts = {
            "SkipLayerNormalization": after.get("SkipLayerNormalization", 0),
            "Gelu": sum(after.get(op, 0) for op in GELU_OPS),
            "EmbedLayerNormalization": after.get("EmbedLayerNormalization", 0),
        }
        expected = {k: v for k, v in expected_counts(context.artifact).items() if k in ("SkipLayerNormalization", "Gelu")}
        notes = []
        if counts["EmbedLayerNormalization"] == 0 and before.get("Gather", 0):
            notes.append("EmbedLayerNormalization not fused (ORT does not match this embedding; the embedding "
                         "sum + LayerNorm becomes SkipLayerNormalization instead)")
        return fused, PassResult(self.name, counts, expected, tuple(notes))


PASSES.register(OrtFusions.name, OrtFusions())

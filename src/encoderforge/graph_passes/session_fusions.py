"""Check (not rewrite) the fusions onnxruntime's CPU session applies at load time.

On CPU the session's own optimizer (level "extended") fuses the erf formula (+ bias) into (Bias)Gelu. This
pass loads the graph as the runtime will, asks ORT to write the optimized graph and counts: Gelu == layers
(expected). SkipLayerNormalization is counted for information only: the session fuses it only where shapes
are known (after int8 quantization, which infers them), and on CPU that fusion measured slower (pipelines).
The graph itself is unchanged, so a fusion that silently stops applying (a new exporter pattern, a new ORT)
still shows up as a shortfall.
"""

from __future__ import annotations

import onnx

from encoderforge.graph_passes._graph import op_counts
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.expectations import GELU_OPS, expected_counts
from encoderforge.onnx_files import LARGE_GRAPH_BYTES, weight_bytes


class SessionFusions:
    name = "session-fusions"
    in_place = True

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        import onnxruntime as ort

        from encoderforge.runtime.backends.onnxruntime import OrtOptions

        expected = {k: v for k, v in expected_counts(context.artifact).items() if k == "Gelu"}
        if weight_bytes(model) > LARGE_GRAPH_BYTES:
            return model, PassResult(self.name, {}, {}, ("not checked: graph above 1.8 GB",))
        source = context.workdir / "session-fusions-input.onnx"
        target = context.workdir / "session-fusions-optimized.onnx"
        onnx.save_model(model, str(source))
        options = OrtOptions(optimization_level="extended").session_options(optimized_model_path=str(target))
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        after = op_counts(onnx.load(str(target), load_external_data=False))
        source.unlink()
        target.unlink()
        counts = {"SkipLayerNormalization": after.get("SkipLayerNormalization", 0),
                  "Gelu": sum(after.get(op, 0) for op in GELU_OPS)}
        note = "counted in the graph onnxruntime's CPU session builds at load time (level extended)"
        return model, PassResult(self.name, counts, expected, (note,))


PASSES.register(SessionFusions.name, SessionFusions())

"""INT8 static through NNCF (`nncf.quantize` on the ONNX graph): the int8-static engine for OpenVINO.

NNCF's TRANSFORMER preset places Q/DQ the way OpenVINO's CPU plugin likes (SmoothQuant, the attention products
quantized too, fast bias correction) and writes a standard-op QDQ graph. Measured against our own QDQ rules on
the same calibration text (roberta-base QA, Xeon with AMX, static shapes): 18.1 / 90.1 ms at batch 1 / 8 on
OpenVINO against 18.4 / 97.9, min cosine 0.9995 against 0.9989; on ONNX Runtime its graph is about 2x slower
than ours, so auto runs it on OpenVINO only (`auto.py`) and the `cpu` int8-static pipeline keeps our rules.

Embedding Gathers stay float: quantized (the preset's default), OpenVINO 2026.4's CPU plugin cannot compile
the result (`constant_folding.cpp:71`). On CPUs whose int8 kernels saturate (no VNNI / AMX), every weight is
quantized to 7 bits (nncf's overflow fix, ENABLE; its default covers only the first layer).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path

import onnx

from encoderforge.cpu import current_cpu
from encoderforge.errors import UnsupportedError, ValidationError
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.options import CalibrationOptions
from encoderforge.onnx_files import PROTOBUF_LIMIT, copy_model, weight_bytes

INSTALL = "pip install 'encoderforge[openvino]'"


def nncf_missing() -> str | None:
    """None when nncf can be imported, else why not and the install command."""
    try:
        import nncf  # noqa: F401
    except ImportError:
        return f"nncf is not installed ({INSTALL})"
    return None


class QuantizeNncf:
    name = "int8-static-nncf"
    in_place = False

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        missing = nncf_missing()
        if missing is not None:
            raise UnsupportedError(f"pass {self.name}: {missing}")
        if weight_bytes(model) >= PROTOBUF_LIMIT:
            raise UnsupportedError(f"pass {self.name}: nncf's ONNX backend takes graphs under 2 GB; this one has "
                                   f"{weight_bytes(model) / 2**30:.1f} GB of weights (use --precision int8-static)")
        import nncf
        from nncf.onnx.quantization.backend_parameters import BackendParameters
        from nncf.quantization.advanced_parameters import OverflowFix

        from encoderforge.calibration.sources import DEFAULT_SAMPLES, calibration_feeds

        options = CalibrationOptions.read(context.options)
        samples = options.calibration_samples or DEFAULT_SAMPLES
        names = {i.name for i in model.graph.input}
        feeds = [{k: v for k, v in feed.items() if k in names}
                 for feed in calibration_feeds(context.artifact, options.calibration_data, samples=samples)]
        seven_bit = not current_cpu().int8_without_saturation  # see quantize_static.reduce_range_for
        nncf.set_log_level(logging.ERROR)
        try:
            with tempfile.TemporaryDirectory(prefix="nncf-weights-", dir=context.workdir) as scratch:
                folder = Path(scratch).resolve()  # nncf asks for an absolute path
                quantized = nncf.quantize(
                    _weights_on_disk(model, folder), nncf.Dataset(feeds),
                    model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds),
                    ignored_scope=nncf.IgnoredScope(types=["Gather"], validate=False),
                    advanced_parameters=nncf.AdvancedQuantizationParameters(
                        **({"overflow_fix": OverflowFix.ENABLE} if seven_bit else {}),
                        backend_params={BackendParameters.EXTERNAL_DATA_DIR: str(folder)}))
        except Exception as exc:  # nncf's own failures (e.g. ConvBERT's statistics): this pass's one-line error
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            raise ValidationError(f"nncf {nncf.__version__} cannot quantize this graph: {type(exc).__name__}: "
                                  f"{lines[-1]}; use --precision int8-static (our QDQ rules)") from exc
        ops = Counter(n.op_type for n in quantized.graph.node)
        matmuls = sum(1 for n in model.graph.node if n.op_type in ("MatMul", "Gemm"))
        return quantized, PassResult(
            self.name,
            counts={"quantize_linear": ops["QuantizeLinear"], "dequantize_linear": ops["DequantizeLinear"]},
            notes=((f"nncf {nncf.__version__}, TRANSFORMER preset, {len(feeds)} calibration samples, "
                   "embedding Gathers left float, weights " + ("7-bit (overflow fix: this CPU's int8 kernels "
                                                                "saturate without VNNI)" if seven_bit else "8-bit")),),
            details={"engine": "nncf", "nncf": nncf.__version__, "samples": len(feeds), "matmuls": matmuls,
                     "reduce_range": seven_bit},
        )


def _weights_on_disk(model: onnx.ModelProto, folder: Path) -> onnx.ModelProto:
    """A copy of `model` whose weights live in `folder` (nncf reads them from there and loads them back into its
    result). nncf infers shapes and serializes the graph some 80 times: with the weights inline that was half of
    its time on roberta-base."""
    onnx.save_model(copy_model(model), str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=1024)
    return onnx.load(str(folder / "model.onnx"), load_external_data=False)


PASSES.register("int8-static-nncf", QuantizeNncf())

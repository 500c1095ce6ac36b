"""The int8-static-nncf pass: nncf quantizes a copy whose weights it reads from a scratch folder, and the result
is a self-contained QDQ graph (every weight back inline, the folder gone) within auto's bound on OpenVINO."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx.external_data_helper import uses_external_data

from encoderforge.artifact import Artifact
from encoderforge.fidelity import FidelityReport, compare_outputs, fidelity_feeds, make_session, run_model
from encoderforge.graph_passes import DEFAULT_MAX_DROP
from encoderforge.graph_passes.base import PassContext
from encoderforge.graph_passes.pipelines import resolve
from encoderforge.graph_passes.quantize_nncf import nncf_missing
from tests.fidelity_bounds import INT8

pytestmark = pytest.mark.skipif(nncf_missing() is not None, reason=str(nncf_missing()))


def _on_openvino(art: Artifact, model: onnx.ModelProto, folder: Path) -> FidelityReport:
    """The graph's outputs on OpenVINO (the engine auto runs NNCF's graphs on: its int8 kernels are the ones
    NNCF places Q/DQ for, on every CPU kind) against the fp32 source on ONNX Runtime."""
    import openvino as ov

    folder.mkdir()
    onnx.save_model(model, str(folder / "model.onnx"))
    compiled = ov.Core().compile_model(str(folder / "model.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {port.get_any_name() for port in compiled.inputs}
    feeds = fidelity_feeds(art)
    outputs = [{port.get_any_name(): value for port, value in compiled({k: v for k, v in feed.items()
                                                                        if k in names}).items()}
               for feed in feeds]
    return compare_outputs(run_model(make_session(art.model_path), feeds), outputs, feeds)


def test_nncf_output_is_self_contained_and_within_the_bound(artifact: Callable[..., Artifact],
                                                           tmp_path: Path) -> None:
    art = artifact("roberta", "question-answering")
    source = onnx.load(str(art.model_path))
    before = source.SerializeToString()
    model, result = resolve("int8-static-nncf").apply(source, PassContext(
        artifact=art, target="cpu", workdir=tmp_path, options={"calibration_samples": 16}))
    assert source.SerializeToString() == before  # the input graph is left as it was
    assert list(tmp_path.iterdir()) == []  # the weights folder is gone
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    assert result.counts["quantize_linear"] > 0 and result.details["samples"] == 16
    report = _on_openvino(art, model, tmp_path / "check")
    # what auto holds every candidate to (its default bound), and nncf's SQNR on these random logits is ~40 dB
    assert report.finite and report.accuracy_drop <= DEFAULT_MAX_DROP["auto"] and report.min_cosine >= 0.995
    assert min(o.pooled_sqnr_db for o in report.outputs.values()) > INT8.min_sqnr_db


@pytest.mark.parametrize("saturates", [True, False], ids=["avx2", "vnni"])
def test_nncf_weights_are_7_bit_where_the_cpu_int8_kernels_saturate(saturates: bool, artifact: Callable[..., Artifact],
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """nncf's overflow fix on every weight where u8 x s8 products saturate in int16 (no VNNI / AMX); 8 bits elsewhere."""
    import numpy as np
    from onnx import numpy_helper

    from encoderforge.cpu import CpuFeatures
    from encoderforge.graph_passes import quantize_nncf

    flags = {"avx2", "fma"} if saturates else {"avx2", "avx512f", "avx512_vnni"}
    monkeypatch.setattr(quantize_nncf, "current_cpu", lambda: CpuFeatures("fake EPYC", frozenset(flags), "x86_64"))
    art = artifact("bert", "text-classification")
    model, result = resolve("int8-static-nncf").apply(onnx.load(str(art.model_path)), PassContext(
        artifact=art, target="cpu", workdir=tmp_path, options={"calibration_samples": 8}))
    weights = [numpy_helper.to_array(t).astype(np.int32) for t in model.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    peak = max(int(np.abs(w).max()) for w in weights)
    assert len(weights) >= 6 and result.details["reduce_range"] is saturates
    assert peak <= 64 if saturates else peak > 100, peak

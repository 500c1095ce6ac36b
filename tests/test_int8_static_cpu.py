"""The CPU rule set of the int8-static pass: every quantized unit is one onnxruntime fuses into an integer
kernel (uint8 activations x int8 weights, a DequantizeLinear per consumer, constant weights only), so that no
DequantizeLinear is left to run at inference time; the helpers in qdq_cpu.py; the graph also runs on OpenVINO."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from encoderforge.artifact import Artifact
from encoderforge.errors import ValidationError
from encoderforge.fidelity import compare_models, fidelity_feeds
from encoderforge.graph_passes.base import PassContext, PassResult
from encoderforge.graph_passes.pipelines import resolve
from encoderforge.graph_passes.qdq_cpu import constant_weight_nodes, dedicate_dequantize
from encoderforge.graph_passes.quantize_static import QUANTIZED_OPS, quantized_nodes


def _int8(art: Artifact, tmp_path: Path, model: onnx.ModelProto | None = None,
          **options: Any) -> tuple[onnx.ModelProto, PassResult]:
    source = model if model is not None else onnx.load(str(art.model_path))
    return resolve("int8-static").apply(source, PassContext(artifact=art, target="cpu", workdir=tmp_path,
                                                            options={"calibration_samples": 16, **options}))


def _after_ort(model: onnx.ModelProto, tmp_path: Path) -> Counter[str]:
    """Op counts of the graph onnxruntime's CPU session actually runs (its optimized graph, saved)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "ort-optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(tmp_path / "ort-optimized.onnx")).graph.node)


@pytest.mark.parametrize(("family", "task"), [("bert", "question-answering"), ("convbert", "token-classification")])
def test_every_quantized_unit_is_fused_by_onnxruntime(family: str, task: str, artifact: Callable[..., Artifact],
                                                     tmp_path: Path) -> None:
    art = artifact(family, task)
    source = onnx.load(str(art.model_path))
    model, result = _int8(art, tmp_path / "q")
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers = Counter(i for n in graph.node for i in n.input)
    weighted, activation_only = constant_weight_nodes(source, ("MatMul",))
    assert activation_only or family == "bert"  # unfused attention: Q·Kᵀ and P·V have no constant weight
    assert sorted(quantized_nodes(model)) == sorted(weighted)  # activation x activation products stay fp32
    for q in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        assert numpy_helper.to_array(inits[q.input[2]]).dtype == np.uint8  # u8 activations (VNNI u8 x s8)
    for dq in (n for n in graph.node if n.op_type == "DequantizeLinear"):
        assert consumers[dq.output[0]] == 1, f"{dq.name} feeds {consumers[dq.output[0]]} nodes"
        if dq.input[0] in inits:
            assert numpy_helper.to_array(inits[dq.input[0]]).dtype == np.int8  # int8 weights
        else:
            assert producers[dq.input[0]].op_type == "QuantizeLinear"
    assert "activations: uint8" in result.notes
    ran = _after_ort(model, tmp_path)
    assert ran["DequantizeLinear"] == 0, ran  # no weight dequantized at run time, no fp32 MatMul behind a DQ
    assert ran["MatMulIntegerToFloat"] == len(weighted), ran
    report = compare_models(art.model_path, model, fidelity_feeds(art), artifact=art)
    assert report.min_cosine >= 0.995 and report.median_sqnr_db >= 25.0, report.as_manifest()


def test_previous_rules_leave_units_unfused(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    """The root cause, kept visible: a shared DQ (Q, K and V read one pair) forms no node unit."""
    art = artifact("bert", "question-answering")
    shared, _ = _int8(art, tmp_path / "q", activation_type="int8", constant_weights_only=False,
                      dedicated_dequantize=False)
    assert _after_ort(shared, tmp_path)["DequantizeLinear"] > 0
    with pytest.raises(ValidationError, match="unknown activation_type 'int4'"):
        _int8(art, tmp_path / "bad", activation_type="int4")


def test_dedicate_dequantize_gives_each_consumer_its_own() -> None:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])
    outputs = [helper.make_tensor_value_info(f"y{i}", onnx.TensorProto.FLOAT, [2, 4]) for i in range(3)]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(3, np.uint8), "z"),
             numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
             *(helper.make_node("MatMul", ["xd", "w"], [f"y{i}"], name=f"m{i}") for i in range(3))]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    assert dedicate_dequantize(model) == 2
    onnx.checker.check_model(model)
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) == 3 and len({d.output[0] for d in dqs}) == 3
    assert sorted(n.input[0] for n in model.graph.node if n.op_type == "MatMul") == sorted(d.output[0] for d in dqs)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 1  # still quantized once
    assert dedicate_dequantize(model) == 0
    assert constant_weight_nodes(model, QUANTIZED_OPS) == (["m0", "m1", "m2"], [])


def test_cpu_int8_graph_runs_on_openvino(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'encoderforge[openvino]')")
    from encoderforge.graph_passes import OptimizeConfig, optimize
    from encoderforge.runtime.backends import get_backend
    from encoderforge.runtime.backends.openvino import OpenVinoBackend

    art = artifact("roberta", "text-classification")
    int8 = optimize(OptimizeConfig(artifact=art.path, output=tmp_path / "int8", precision="int8-static",
                                   calibration_samples=16))
    assert "openvino" in int8.manifest.backends
    session = OpenVinoBackend().load(int8, precision="f32")
    assert session.precision == "int8"
    rng = np.random.default_rng(1)
    feed = {"input_ids": rng.integers(5, 60, (2, 20), dtype=np.int64), "attention_mask": np.ones((2, 20), np.int64)}
    want = get_backend("onnxruntime-cpu").load(int8).run(feed)["logits"]
    got = session.run(feed)["logits"]
    assert float(np.abs(got - want).max()) <= 0.05 * float(np.ptp(want)) + 1e-3

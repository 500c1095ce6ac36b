"""The INT8 fidelity bounds (tests/fidelity_bounds.py) pass on correct quantized graphs and fail on graphs broken
on purpose the ways real regressions break them: a dropped weight scale, a Q/DQ pair placed where it clips.
(A wrong output scale, which a per-row cosine cannot see, is shown on synthetic logits below: the CPU rule set
leaves the classifier head in fp32.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from encoderforge.artifact import Artifact
from encoderforge.fidelity import compare_models, compare_outputs, fidelity_feeds
from encoderforge.graph_passes.base import PassContext
from encoderforge.graph_passes.pipelines import resolve
from tests.fidelity_bounds import cpu_int8_bound

# the short-output heads, where per-row cosines were noise: 2 class logits, 3 choice logits
SHORT_HEADS = [("bert", "text-classification"), ("convbert", "multiple-choice")]
# Their weights drawn 10x wider than the tiny defaults (0.02): at 0.02 a 2-layer BERT's class logits are its
# biases (std across inputs 2e-5 against a mean of 0.05), which no breakage inside the network can move much;
# at 0.2 they follow the input as a trained model's do (std 0.08-0.24 against 0.3-0.5).
RESPONSIVE = {"initializer_range": 0.2}


@pytest.fixture(scope="module")
def responsive_artifact(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Artifact]:
    from encoderforge.exporters import ExportConfig, export
    from encoderforge.synthetic import build_checkpoint

    root = tmp_path_factory.mktemp("responsive")

    def build(family: str, task: str) -> Artifact:
        checkpoint = build_checkpoint(family, task, root / f"{family}-{task}-checkpoint", **RESPONSIVE)
        return export(ExportConfig(model=str(checkpoint), task=task, output=root / f"{family}-{task}"))

    return build


def _quantized(art: Artifact, tmp_path: Path) -> onnx.ModelProto:
    model, _ = resolve("int8-static").apply(onnx.load(str(art.model_path)), PassContext(
        artifact=art, target="cpu", workdir=tmp_path, options={"calibration_samples": 32}))
    return model


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def _weight_dequantizers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    inits = _initializers(model)
    return [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
            and inits[n.input[0]].data_type == onnx.TensorProto.INT8 and len(inits[n.input[0]].dims) == 2]


def _rescaled(model: onnx.ModelProto, which: int, scale: Callable[[np.ndarray], np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose `which`-th weight DequantizeLinear has its scale replaced by `scale(old)`."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    tensor = _initializers(broken)[_weight_dequantizers(broken)[which].input[1]]
    tensor.CopyFrom(numpy_helper.from_array(scale(numpy_helper.to_array(tensor)).astype(np.float32), tensor.name))
    return broken


def _breakages(model: onnx.ModelProto) -> dict[str, onnx.ModelProto]:
    weights = _weight_dequantizers(model)
    inits = _initializers(model)
    # the first feed-forward down-projection (the widest input): its output goes straight into the residual
    middle = max(range(len(weights)), key=lambda i: (inits[weights[i].input[0]].dims[0], -i))
    return {
        "a feed-forward weight scale dropped (1.0)": _rescaled(model, middle, np.ones_like),
        "a clipping Q/DQ pair after the last LayerNorm": _clipping_pair(model),
    }


def _clipping_pair(model: onnx.ModelProto) -> onnx.ModelProto:
    """A Q/DQ pair on the last LayerNormalization's output (the hidden state the head reads), with a scale from a
    small activation's range (as a misplaced pair carrying another tensor's calibration would): it is clipped.
    Drop 0.41 (bert) / 0.39 (convbert) on the responsive checkpoints, against 3e-4 / 6e-4 for the correct graph."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    graph = broken.graph
    norm = [n for n in graph.node if n.op_type == "LayerNormalization"][-1]
    out = norm.output[0]
    graph.initializer.extend([numpy_helper.from_array(np.array(0.001, np.float32), "misplaced_scale"),
                              numpy_helper.from_array(np.array(0, np.int8), "misplaced_zero")])
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == out:
                node.input[i] = "misplaced_dq"
    position = list(graph.node).index(norm) + 1
    graph.node.insert(position, helper.make_node("QuantizeLinear", [out, "misplaced_scale", "misplaced_zero"],
                                                 ["misplaced_q"], name="misplaced_Q"))
    graph.node.insert(position + 1, helper.make_node("DequantizeLinear", ["misplaced_q", "misplaced_scale",
                                                                          "misplaced_zero"], ["misplaced_dq"],
                                                     name="misplaced_DQ"))
    return broken


@pytest.mark.parametrize(("family", "task"), SHORT_HEADS, ids=[f"{f}-{t}" for f, t in SHORT_HEADS])
def test_bounds_pass_correct_and_fail_broken_graphs(family: str, task: str,
                                                    responsive_artifact: Callable[[str, str], Artifact],
                                                    tmp_path: Path) -> None:
    art = responsive_artifact(family, task)
    model = _quantized(art, tmp_path)
    feeds = fidelity_feeds(art)
    correct = compare_models(art.model_path, model, feeds, artifact=art)
    bound = cpu_int8_bound()
    assert bound.violations(correct) == []
    for name, broken in _breakages(model).items():
        onnx.checker.check_model(broken)
        report = compare_models(art.model_path, broken, feeds, artifact=art)
        assert bound.violations(report), f"{name}: the bound did not catch it"
        # the optimize budget's metric: 3e-4 to 1e-3 on the correct graph, 200 times that or more on broken ones
        assert report.accuracy_drop > max(0.005, 100 * correct.accuracy_drop), name


def test_pooled_metrics_see_what_per_row_cosines_miss() -> None:
    """On rows of 3 logits, per-row cosines are blind to a wrong output scale and swing with noise on near-tied
    rows; the pooled SQNR and the accuracy drop built on it are neither."""
    rng = np.random.default_rng(0)
    ref = [{"logits": rng.normal(size=(4, 3))} for _ in range(5)]
    feeds = [{"input_ids": np.zeros((4, 8), np.int64)} for _ in ref]

    def fidelity(candidate: list[dict[str, np.ndarray]]) -> tuple[float, float, float]:
        report = compare_outputs(ref, candidate, feeds)
        out = report.outputs["logits"]
        return out.pooled_sqnr_db, out.min_cosine, report.accuracy_drop

    sqnr, _, drop = fidelity([{"logits": r["logits"] + rng.normal(scale=1e-3, size=(4, 3))} for r in ref])
    assert sqnr > 55 and drop < 1e-5
    sqnr, cosine, drop = fidelity([{"logits": 2 * r["logits"]} for r in ref])
    assert cosine > 0.99999 and sqnr < 1 and drop > 0.3  # the cosine says perfect; the scale is wrong
    sqnr, _, drop = fidelity([{"logits": r["logits"] + rng.normal(scale=0.5, size=(4, 3))} for r in ref])
    assert sqnr < 8 and drop > 0.05

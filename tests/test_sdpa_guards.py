"""drop-sdpa-guards: the SDPA NaN guard goes, the mask becomes finite, outputs stay the same (padded batches,
multiple choice's 3-D mask, the causal mask of text generation), and OpenVINO then fuses attention. RemBERT
and ConvBERT export eager attention (no guard): the pass leaves them as they are and says so."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from encoderforge.artifact import Artifact
from encoderforge.fidelity import compare_models, fidelity_feeds
from encoderforge.graph_passes.base import PassContext, PassResult
from encoderforge.graph_passes.pipelines import resolve

SDPA_CASES = [("roberta", "question-answering"), ("camembert", "token-classification"),
              ("bert", "text-classification"), ("bert", "multiple-choice"), ("roberta", "text-generation")]
EAGER_CASES = [("rembert", "question-answering"), ("convbert", "token-classification")]


def drop_guards(source: Artifact, model: onnx.ModelProto | None = None) -> tuple[onnx.ModelProto, PassResult]:
    with tempfile.TemporaryDirectory() as tmp:
        context = PassContext(artifact=source, target="cpu", workdir=Path(tmp))
        return resolve("drop-sdpa-guards").apply(model or onnx.load(str(source.model_path)), context)


def ops(model: onnx.ModelProto, op: str) -> int:
    return sum(1 for n in model.graph.node if n.op_type == op)


def has_neg_inf(model: onnx.ModelProto) -> bool:
    values = [numpy_helper.to_array(i) for i in model.graph.initializer]
    values += [numpy_helper.to_array(a.t) for n in model.graph.node if n.op_type == "Constant"
               for a in n.attribute if a.name == "value"]
    return any(np.issubdtype(v.dtype, np.floating) and bool(np.isneginf(v).any()) for v in values)


@pytest.mark.parametrize("family,task", SDPA_CASES)
def test_guards_go_and_outputs_stay(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    source = artifact(family, task)
    before = onnx.load(str(source.model_path))
    layers = source.config()["num_hidden_layers"]
    assert ops(before, "IsNaN") == layers and has_neg_inf(before)  # what the torch export writes today
    model, result = drop_guards(source)
    assert result.counts["guards_removed"] == layers and result.shortfalls() == {}
    assert result.counts["masks_made_finite"] >= 1
    assert ops(model, "IsNaN") == 0 and not has_neg_inf(model)
    assert ops(model, "Softmax") == layers
    feeds = fidelity_feeds(source, count=6, batch_size=3)
    for feed in feeds:  # padding in every batch, whatever the text's lengths
        feed["attention_mask"][..., -1, -2:] = 0
    report = compare_models(source.model_path, model, feeds)
    assert report.max_abs_diff < 1e-5, report.as_manifest()


@pytest.mark.parametrize("family,task", EAGER_CASES)
def test_eager_attention_is_left_alone(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    source = artifact(family, task)
    before = onnx.load(str(source.model_path))
    model, result = drop_guards(source, onnx.load(str(source.model_path)))
    assert result.counts == {"guards_removed": 0, "masks_made_finite": 0} and result.shortfalls() == {}
    assert result.notes == ("no SDPA NaN guard found (nothing to do)",)
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in before.graph.node]


def test_a_fully_masked_row_stays_finite(artifact: Callable[..., Artifact]) -> None:
    """The guard's one job (an all-padding row) is kept by the finite mask: no NaN, and the other rows of the
    batch are exactly what the guarded graph gives."""
    source = artifact("roberta", "token-classification")
    model, _ = drop_guards(source)
    feed = fidelity_feeds(source, count=1, batch_size=2)[0]
    feed["attention_mask"][1] = 0
    guarded = ort.InferenceSession(str(source.model_path), providers=["CPUExecutionProvider"])
    dropped = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in guarded.get_inputs()}
    feed = {k: v for k, v in feed.items() if k in names}
    ours, theirs = dropped.run(None, feed)[0], guarded.run(None, feed)[0]
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-6)


def test_a_second_run_finds_nothing_and_says_so(artifact: Callable[..., Artifact]) -> None:
    source = artifact("bert", "text-classification")
    model, _ = drop_guards(source)
    _, again = drop_guards(source, model)
    assert again.counts["guards_removed"] == 0 and again.notes == ("no SDPA NaN guard found (nothing to do)",)


def test_a_mask_it_cannot_prove_finite_keeps_its_guard(artifact: Callable[..., Artifact]) -> None:
    """A guard whose mask is not a Where of float constants (here: the mask's 0 replaced by a NaN) stays."""
    source = artifact("bert", "text-classification")
    model = onnx.load(str(source.model_path))
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = numpy_helper.to_array(node.attribute[0].t)
            if value.size == 1 and np.issubdtype(value.dtype, np.floating) and np.isneginf(value).all():
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.full_like(value, np.nan)))
    model, result = drop_guards(source, model)
    assert result.counts["guards_removed"] == 0 and ops(model, "IsNaN") == source.config()["num_hidden_layers"]


def test_openvino_fuses_attention_once_the_guard_is_gone(artifact: Callable[..., Artifact]) -> None:
    ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")
    source = artifact("roberta", "question-answering")
    model, _ = drop_guards(source)

    def runtime_ops(graph: onnx.ModelProto) -> dict[str, int]:
        core = ov.Core()
        compiled = core.compile_model(core.read_model(graph.SerializeToString(), b""), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
        found: dict[str, int] = {}
        for op in compiled.get_runtime_model().get_ops():
            kind = op.get_rt_info()["layerType"].astype(str)
            found[kind] = found.get(kind, 0) + 1
        return found

    layers = source.config()["num_hidden_layers"]
    before, after = runtime_ops(onnx.load(str(source.model_path))), runtime_ops(model)
    assert before.get("Softmax", 0) == layers  # unfused: a Softmax node per layer
    assert after.get("Softmax", 0) == 0 and after.get("Subgraph", 0) >= layers

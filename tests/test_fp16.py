"""FP16 pass: parity for every family and head, safe mask constants, fp32 islands from observed ranges,
a strongly typed graph, and the real MiniLM's embeddings at cosine >= 0.9999."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from encoderforge.artifact import Artifact
from encoderforge.calibration.ranges import expose_intermediates, inferred_types
from encoderforge.corpus import sentence_corpus
from encoderforge.fidelity import (
    compare_models,
    fidelity_feeds,
    make_session,
    run_model,
)
from encoderforge.graph_passes.base import PASSES, PassContext
from encoderforge.graph_passes.fp16 import FP16_MAX, check_strongly_typed, island_nodes
from encoderforge.runtime.pooling import mean_pool
from tests.conftest import FAMILY_HEADS

FP16_BOUND = 1e-2


def _fp16(art: Artifact, model: onnx.ModelProto, tmp_path: Path, **options: object) -> tuple[onnx.ModelProto, object]:
    return PASSES.get("fp16").apply(model, PassContext(artifact=art, target="tensorrt", workdir=tmp_path,
                                                        options={"calibration_samples": 16, **options}))


@pytest.mark.parametrize(("family", "task"), FAMILY_HEADS, ids=[f"{f}-{t}" for f, t in FAMILY_HEADS])
def test_fp16_parity(family: str, task: str, artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact(family, task)
    source = onnx.load(str(art.model_path))
    model, result = _fp16(art, source, tmp_path)
    report = compare_models(source, model, fidelity_feeds(art, count=8), artifact=art)
    assert report.finite, report.as_manifest()
    assert report.max_abs_diff <= FP16_BOUND, report.as_manifest()
    assert result.counts["fp16_nodes"] > 0 and result.counts["casts"] > 0
    # strongly typed: int64 inputs, fp32 outputs (keep_io_types), every type explicit and consistent
    check_strongly_typed(model)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in model.graph.input)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    types = inferred_types(model)
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert any(types.get(n.input[0]) == onnx.TensorProto.FLOAT16 for n in matmuls), "MatMuls must run in fp16"
    for node in model.graph.node:  # accumulation safety: LayerNorm / Softmax compute in fp32
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(node.input[0]) == onnx.TensorProto.FLOAT, node.name


@pytest.mark.parametrize(("family", "task"), [("bert", "feature-extraction"), ("convbert", "token-classification")])
def test_mask_constants_rewritten_without_overflow(
    family: str, task: str, artifact: Callable[..., Artifact], tmp_path: Path
) -> None:
    art = artifact(family, task)
    source = onnx.load(str(art.model_path))
    huge = [numpy_helper.to_array(a.t) for n in source.graph.node if n.op_type == "Constant" for a in n.attribute
            if a.type == onnx.AttributeProto.TENSOR and numpy_helper.to_array(a.t).dtype == np.float32
            and numpy_helper.to_array(a.t).size and np.abs(numpy_helper.to_array(a.t)).max() > FP16_MAX]
    assert huge, "the export should carry -inf / finfo.min mask constants"
    with np.errstate(over="ignore"):
        assert any(np.isinf(h.astype(np.float16)).any() for h in huge)  # the hazard: they overflow in fp16
    model, result = _fp16(art, source, tmp_path)
    assert result.counts["mask_constants"] >= 1
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                value = numpy_helper.to_array(attr.t)
                if value.dtype.kind == "f" and value.size:
                    assert np.isfinite(value).all() and np.abs(value).max() <= FP16_MAX, node.name
    # every intermediate of the fp16 graph stays finite on padded batches (masked positions included)
    exposed, _ = expose_intermediates(model)
    session = make_session(exposed, optimization="disable")
    outputs = [o.name for o in session.get_outputs()]
    fp16_seen = 0
    for feed in fidelity_feeds(art, count=4, batch_size=3):
        for name, value in zip(outputs, session.run(outputs, feed)):
            if value.dtype.kind == "f":
                fp16_seen += value.dtype == np.float16
                assert np.isfinite(value).all(), f"{name} overflows"
    assert fp16_seen > 0


def _plant_large_activation(model: onnx.ModelProto, scale: float = 3e4) -> tuple[onnx.ModelProto, list[str]]:
    """x -> Mul(x, scale) -> Mul(., 1/scale) after the embeddings' LayerNorm: exact in fp32, an overflow
    (|x| * 3e4 > 65504) in fp16 unless those nodes stay in fp32."""
    planted = onnx.ModelProto()
    planted.CopyFrom(model)
    graph = planted.graph
    target = next(n for n in graph.node if n.op_type == "LayerNormalization").output[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == target:
                node.input[i] = "planted_down"
    graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), "planted_up_scale"),
                              numpy_helper.from_array(np.array(1 / scale, np.float32), "planted_down_scale")])
    index = next(i for i, n in enumerate(graph.node) if target in n.output)
    graph.node.insert(index + 1, helper.make_node("Mul", ["planted_up", "planted_down_scale"], ["planted_down"],
                                                  name="planted_down_mul"))
    graph.node.insert(index + 1, helper.make_node("Mul", [target, "planted_up_scale"], ["planted_up"],
                                                  name="planted_up_mul"))
    return planted, ["planted_up_mul", "planted_down_mul"]


def test_planted_large_activation_forces_an_island(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact("bert", "text-classification")
    planted, nodes = _plant_large_activation(onnx.load(str(art.model_path)))
    feeds = fidelity_feeds(art, count=6)
    model, result = _fp16(art, planted, tmp_path)
    assert set(nodes) <= set(island_nodes(result)), result.notes
    assert result.counts["fp32_islands"] >= 2
    report = compare_models(planted, model, feeds)
    assert report.finite and report.max_abs_diff <= FP16_BOUND, report.as_manifest()
    # without range-chosen islands the same graph overflows where fp16 math really runs in fp16 (onnx's
    # reference evaluator here; TensorRT on a GPU). onnxruntime CPU would hide it: it computes fp16 Mul in
    # fp32 and drops the Cast pair between the two Muls.
    naive, naive_result = _fp16(art, planted, tmp_path / "naive", fp16_auto_islands=False)
    assert naive_result.counts["fp32_islands"] == 0
    def up_type(graph: onnx.ModelProto) -> int:
        return inferred_types(graph)[next(n for n in graph.graph.node if n.name == "planted_up_mul").output[0]]

    assert up_type(naive) == onnx.TensorProto.FLOAT16 and up_type(model) == onnx.TensorProto.FLOAT
    from onnx.reference import ReferenceEvaluator

    feed = feeds[0]
    with np.errstate(over="ignore", invalid="ignore"):
        broken = ReferenceEvaluator(naive).run(None, feed)[0]
        kept = ReferenceEvaluator(model).run(None, feed)[0]
    assert not np.isfinite(broken).all()
    assert np.isfinite(kept).all()


def test_threshold_is_an_option(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact("roberta", "text-classification")
    _, result = _fp16(art, onnx.load(str(art.model_path)), tmp_path, fp16_threshold=1e-3)
    assert result.counts["fp32_islands"] > 10  # nearly everything exceeds 1e-3: all become islands


def test_minilm_fp16_embeddings(minilm_artifact: Artifact, tmp_path: Path) -> None:
    source = onnx.load(str(minilm_artifact.model_path))
    model, _ = _fp16(minilm_artifact, source, tmp_path)
    feeds = fidelity_feeds(minilm_artifact, texts=sentence_corpus(256), batch_size=32, count=100)

    def embed(graph: onnx.ModelProto) -> np.ndarray:
        outs = run_model(make_session(graph), feeds)
        return np.concatenate([mean_pool(o["last_hidden_state"], f["attention_mask"]) for o, f in zip(outs, feeds)])

    cosine = np.sum(embed(source) * embed(model), axis=1)
    assert cosine.shape == (256,)
    assert cosine.min() >= 0.9999, f"min cosine {cosine.min():.6f}"

"""Graph passes on tiny models of every family: fusion counts == expected, parity with the unfused graph,
dynamic int8 fidelity, shortfall reporting, pipelines. Real-weight parity on the bundled MiniLM."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from encoderforge.artifact import Artifact
from encoderforge.errors import UnknownKeyError, UnsupportedError, ValidationError
from encoderforge.fidelity import compare_models, fidelity_feeds
from encoderforge.graph_passes import DEFAULT_MAX_DROP, OptimizeConfig, optimize
from encoderforge.graph_passes.base import PassContext, PassResult
from encoderforge.graph_passes.expectations import GELU_OPS, expected_counts
from encoderforge.graph_passes.pipelines import (
    PASS_MODULES,
    PASS_PIPELINES,
    PRECISIONS,
    TARGETS,
    pipeline,
    resolve,
)
from tests.fidelity_bounds import INT8

# One head per family (the graph body is what the passes rewrite), plus multiple choice for its 3-D mask.
CASES = [("roberta", "question-answering"), ("camembert", "token-classification"),
         ("bert", "text-classification"), ("rembert", "question-answering"),
         ("convbert", "token-classification"), ("bert", "multiple-choice")]
FUSIONS = ("fuse-attention", "ort-fusions")


def run_passes(artifact: Artifact, names: tuple[str, ...], **options: object) -> tuple[onnx.ModelProto, list[PassResult]]:
    model = onnx.load(str(artifact.model_path))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        context = PassContext(artifact=artifact, target="cpu", workdir=Path(tmp), options=options)
        for name in names:
            model, result = resolve(name).apply(model, context)
            results.append(result)
    return model, results


def op_count(model: onnx.ModelProto, *ops: str) -> int:
    return sum(1 for n in model.graph.node if n.op_type in ops)


@pytest.mark.parametrize("family,task", CASES)
def test_fusion_counts_equal_expected(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    source = artifact(family, task)
    layers = source.config()["num_hidden_layers"]
    model, results = run_passes(source, FUSIONS)
    for result in results:
        assert result.shortfalls() == {}, f"{family}: {result.name} fell short: {result.as_manifest()}"
    # the expectations come from config.json: one attention per layer, two SkipLayerNorms, one Gelu
    assert expected_counts(source) == {"MultiHeadAttention": layers, "SkipLayerNormalization": 2 * layers,
                                       "Gelu": layers}
    assert op_count(model, "MultiHeadAttention") == layers
    assert op_count(model, "SkipLayerNormalization") >= 2 * layers
    assert op_count(model, *GELU_OPS) == layers
    assert op_count(model, "Softmax") == (layers if family == "convbert" else 0)  # ConvBERT: its conv kernel
    onnx.checker.check_model(model)


@pytest.mark.parametrize("family,task", CASES)
def test_cpu_pipeline_counts(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    source = artifact(family, task)
    layers = source.config()["num_hidden_layers"]
    _, results = run_passes(source, pipeline("cpu", "fp32"))
    by_name = {r.name: r for r in results}
    assert by_name["fuse-attention"].shortfalls() == {}
    session = by_name["session-fusions"]
    assert session.counts["Gelu"] == layers and session.expected == {"Gelu": layers}
    assert session.shortfalls() == {}, session.as_manifest()


@pytest.mark.parametrize("family,task", [("roberta", "question-answering"), ("bert", "text-classification")])
def test_session_fuses_skip_layer_norm_once_shapes_are_known(artifact: Callable[..., Artifact], family: str,
                                                             task: str) -> None:
    source = artifact(family, task)
    _, results = run_passes(source, ("infer-shapes", "fuse-attention", "session-fusions"))
    assert results[-1].counts["SkipLayerNormalization"] == 2 * source.config()["num_hidden_layers"]


@pytest.mark.parametrize("family,task", CASES)
def test_fused_graph_matches_unfused(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    source = artifact(family, task)
    model, _ = run_passes(source, FUSIONS)
    report = compare_models(source.model_path, model, fidelity_feeds(source, count=6))
    assert report.max_abs_diff < 1e-4, report.as_manifest()
    assert report.min_cosine > 0.99999


def test_attention_fusion_parity_with_peaked_attention(artifact: Callable[..., Artifact]) -> None:
    """Random tiny weights give near-uniform attention, which hides a wrong mask or scale. Sharpen it (query
    weights x 40) so that padding and scale matter, and check the fused graph still agrees."""
    source = artifact("roberta", "token-classification")
    model = onnx.load(str(source.model_path))
    for init in model.graph.initializer:
        producer_is_query = any(n.op_type == "MatMul" and init.name in n.input and "query" in n.name
                                for n in model.graph.node)
        if producer_is_query:
            value = onnx.numpy_helper.to_array(init) * 40.0
            init.CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), init.name))
    with tempfile.TemporaryDirectory() as tmp:
        sharp = Path(tmp) / "sharp.onnx"
        onnx.save_model(model, str(sharp))
        context = PassContext(artifact=source, target="cpu", workdir=Path(tmp))
        fused, result = resolve("fuse-attention").apply(onnx.load(str(sharp)), context)
        assert result.counts["MultiHeadAttention"] == 2
        feeds = fidelity_feeds(source, count=6, batch_size=3)  # unequal lengths: padding in every batch
        assert any((f["attention_mask"] == 0).any() for f in feeds)
        report = compare_models(sharp, fused, feeds)
    # a scale off by 1.5x moves the outputs by ~5e-4 here, a dropped mask by ~1e-3: both fail this bound
    assert report.max_abs_diff < 1e-5, report.as_manifest()


def test_minilm_real_weights_fused_parity(minilm_artifact: Artifact) -> None:
    model, results = run_passes(minilm_artifact, FUSIONS)
    assert all(r.shortfalls() == {} for r in results)
    report = compare_models(minilm_artifact.model_path, model, fidelity_feeds(minilm_artifact, count=10))
    assert report.max_abs_diff < 1e-4 and report.min_cosine > 0.99999, report.as_manifest()


def test_a_fusion_that_stops_applying_is_reported(artifact: Callable[..., Artifact]) -> None:
    source = artifact("bert", "text-classification")
    model, _ = run_passes(source, ("fuse-attention",))
    with tempfile.TemporaryDirectory() as tmp:  # a second run finds nothing left: a shortfall, not silence
        _, again = resolve("fuse-attention").apply(model, PassContext(artifact=source, target="cpu", workdir=Path(tmp)))
    assert again.shortfalls() == {"MultiHeadAttention": (2, 0)}
    assert again.as_manifest()["shortfalls"] == {"MultiHeadAttention": {"expected": 2, "achieved": 0}}


def test_causal_mask_is_not_fused(artifact: Callable[..., Artifact]) -> None:
    source = artifact("bert", "text-generation")
    model, results = run_passes(source, ("fuse-attention",))
    assert op_count(model, "MultiHeadAttention") == 0
    assert "MultiHeadAttention" not in results[0].expected


@pytest.mark.parametrize("family,task", CASES)
def test_int8_dynamic_fidelity(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    source = artifact(family, task)
    model, results = run_passes(source, pipeline("cpu", "int8-dynamic"))
    quant = next(r for r in results if r.name == "int8-dynamic")
    assert quant.shortfalls() == {} and quant.counts["MatMulInteger"] > 0, quant.as_manifest()
    report = compare_models(source.model_path, model, fidelity_feeds(source, count=10))
    assert INT8.violations(report) == [], report.as_manifest()


def test_int8_dynamic_defaults_follow_the_cpu(artifact: Callable[..., Artifact],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from encoderforge.graph_passes import quantize_dynamic

    source = artifact("bert", "text-classification")
    for vnni, reduce_range in ((True, False), (False, True)):
        monkeypatch.setattr(quantize_dynamic, "has_vnni", lambda v=vnni: v)
        _, results = run_passes(source, ("int8-dynamic",))
        assert f"reduce_range={reduce_range}" in results[0].notes[0]
    _, results = run_passes(source, ("int8-dynamic",), reduce_range=False, per_channel=False)
    assert "reduce_range=False" in results[0].notes[0] and "per_channel=False" in results[0].notes[0]


def test_pipelines_name_registered_passes() -> None:
    for (target, precision), names in PASS_PIPELINES.items():
        assert target in TARGETS and precision in PRECISIONS
        for name in names:
            assert name in PASS_MODULES
            assert resolve(name).name == name


@pytest.mark.parametrize("target,precision,error", [
    ("gpu", "fp32", UnknownKeyError), ("cpu", "int4", UnknownKeyError),
    ("cpu", "fp16", UnsupportedError), ("tensorrt", "int8-dynamic", UnsupportedError),
])
def test_pipeline_rejects_bad_combinations(target: str, precision: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="choose one of|not supported"):
        pipeline(target, precision)


def test_tensorrt_pipelines_emit_no_contrib_ops() -> None:
    contrib = {"fuse-attention", "ort-fusions", "pack-qkv", "int8-dynamic"}
    assert all(not set(PASS_PIPELINES[("tensorrt", p)]) & contrib for p in ("fp32", "fp16", "int8-static"))


@pytest.mark.parametrize("family,task", [("roberta", "question-answering"), ("rembert", "question-answering")])
def test_packed_qkv_attention_parity(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    source = artifact(family, task)
    model, results = run_passes(source, ("fuse-attention", "pack-qkv"))
    assert results[1].counts["Attention"] == source.config()["num_hidden_layers"]
    report = compare_models(source.model_path, model, fidelity_feeds(source, count=6))
    assert report.max_abs_diff < 1e-4, report.as_manifest()


def test_packed_qkv_leaves_convbert_alone(artifact: Callable[..., Artifact]) -> None:
    _, results = run_passes(artifact("convbert", "token-classification"), ("fuse-attention", "pack-qkv"))
    assert results[1].counts["Attention"] == 0 and results[1].notes  # its query also feeds the convolution


def test_optimize_writes_new_artifact(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    source = artifact("roberta", "question-answering")
    result = optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "int8", precision="int8-dynamic"))
    manifest = result.manifest
    assert manifest.precision == "int8-dynamic" and manifest.target == "cpu"
    assert [p.name for p in manifest.passes] == ["fuse-attention", "int8-dynamic", "session-fusions"]
    assert manifest.fusion_shortfalls == {}
    fidelity = manifest.fidelity
    assert fidelity is not None
    assert fidelity["samples"] == 20 and fidelity["min_cosine"] > 0.99
    assert fidelity["bound"] == {"max_accuracy_drop": DEFAULT_MAX_DROP["int8-dynamic"], "explicit": False}
    assert {"max_abs_diff", "argmax_agreement", "median_sqnr_db"} <= set(fidelity)
    assert (result.path / "tokenizer.json").is_file() and (result.path / "config.json").is_file()
    Artifact.load(result.path)  # sha256 of every file matches
    assert Artifact.load(source.path).manifest.precision == "fp32"  # the source is untouched


def test_optimize_fails_a_missed_bound_unless_relaxed(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    source = artifact("bert", "text-classification")
    with pytest.raises(ValidationError, match="max-accuracy-drop"):
        optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "a", precision="int8-dynamic",
                                max_accuracy_drop=0.0))
    assert not (tmp_path / "a").exists()
    relaxed = optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "b", precision="int8-dynamic",
                                      max_accuracy_drop=0.5))
    assert relaxed.manifest.fidelity is not None and relaxed.manifest.fidelity["bound"]["explicit"] is True

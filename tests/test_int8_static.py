"""Static INT8 (QDQ): fidelity bounds per family, calibration methods, the TensorRT Q/DQ rule set, the
accuracy-budget sweep, and the real MiniLM's embeddings and retrieval."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from encoderforge.artifact import Artifact
from encoderforge.calibration.sensitivity import group_of, node_groups
from encoderforge.corpus import sentence_corpus
from encoderforge.errors import UnsupportedError
from encoderforge.fidelity import (
    compare_models,
    fidelity_feeds,
    make_session,
    run_model,
)
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.quantize_static import (
    QUANTIZED_OPS,
    quantized_nodes,
    tensorrt_rule_violations,
    validation_optimization,
)
from encoderforge.runtime.pooling import mean_pool
from tests.fidelity_bounds import INT8

# one head per family, covering every head kind (pairs, choices, per-token, pooled, embeddings)
CASES = [("bert", "text-classification"), ("roberta", "question-answering"), ("camembert", "token-classification"),
         ("convbert", "multiple-choice"), ("rembert", "feature-extraction")]


def _int8(art: Artifact, tmp_path: Path, target: str = "cpu", model: onnx.ModelProto | None = None,
          **options: Any) -> tuple[onnx.ModelProto, PassResult]:
    source = model if model is not None else onnx.load(str(art.model_path))
    return PASSES.get("int8-static").apply(source, PassContext(artifact=art, target=target, workdir=tmp_path,
                                                               options={"calibration_samples": 32, **options}))


@pytest.mark.parametrize(("family", "task"), CASES, ids=[f"{f}-{t}" for f, t in CASES])
@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_static_int8_fidelity(family: str, task: str, target: str, artifact: Callable[..., Artifact],
                              tmp_path: Path) -> None:
    art = artifact(family, task)
    model, result = _int8(art, tmp_path, target)
    assert result.counts["quantized_nodes"] >= 8 and result.counts["excluded_nodes"] == 0
    # cpu: this CPU's own int8 kernels; tensorrt: Q/DQ simulated, as TensorRT computes them
    report = compare_models(art.model_path, model, fidelity_feeds(art), artifact=art,
                            optimization=validation_optimization(target))
    assert INT8.violations(report) == [], report.as_manifest()
    onnx.checker.check_model(model)


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_calibration_methods(method: str, artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact("roberta", "token-classification")
    model, result = _int8(art, tmp_path, calibration_method=method)
    assert f"calibration: {method}, 32 samples" in result.notes
    report = compare_models(art.model_path, model, fidelity_feeds(art, count=8), artifact=art)
    assert INT8.violations(report) == [], report.as_manifest()
    assert (tmp_path / "int8-static" / f"calibration-{method}.json").is_file()  # ranges collected once, cached


def test_calibration_file_and_bad_method(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact("bert", "text-classification")
    data = tmp_path / "calib.jsonl"
    data.write_text("\n".join(f'{{"text": "calibration sentence number {i} about rivers and trains"}}'
                              for i in range(10)) + "\n", encoding="utf-8")
    _, result = _int8(art, tmp_path / "w", calibration_data=data)
    assert "calibration: minmax, 10 samples" in result.notes
    with pytest.raises(UnsupportedError, match="unknown calibration method 'kl'"):
        _int8(art, tmp_path / "w2", calibration_method="kl")


def _by_output(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def test_tensorrt_qdq_rules(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact("roberta", "question-answering")
    model, _ = _int8(art, tmp_path, "tensorrt")
    assert tensorrt_rule_violations(model) == []
    producers = _by_output(model)
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # no Q/DQ around LayerNorm, Softmax or the residual Adds: neither on their inputs nor their outputs
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "Add"):
            assert all(producers[i].op_type != "DequantizeLinear" for i in node.input if i in producers), node.name
            assert all(c.op_type != "QuantizeLinear" or all(
                cc.op_type in QUANTIZED_OPS for q in [c] for cc in
                (x for d in consumers.get(q.output[0], []) for x in consumers.get(d.output[0], [])))
                for o in node.output for c in consumers.get(o, [])), node.name
    # every quantized MatMul/Gemm gets DQ on both inputs; weights are int8, per channel on the output axis
    matmuls = [n for n in model.graph.node if n.name in set(quantized_nodes(model)) and n.op_type in ("MatMul", "Gemm")]
    assert len(matmuls) >= 14
    weights = 0
    for node in matmuls:
        dqs = [producers[i] for i in node.input[:2]]
        assert all(d.op_type == "DequantizeLinear" for d in dqs), node.name
        for dq in dqs:
            if dq.input[0] in inits:
                weights += 1
                w = inits[dq.input[0]]
                assert w.data_type == onnx.TensorProto.INT8
                scale = numpy_helper.to_array(inits[dq.input[1]])
                axis = next(a.i for a in dq.attribute if a.name == "axis")
                channels = w.dims[0] if node.op_type == "Gemm" and any(
                    a.name == "transB" and a.i for a in node.attribute) else w.dims[-1]
                assert scale.size == channels > 1 and axis in (len(w.dims) - 1, 0 if node.op_type == "Gemm" else -9)
    assert weights >= 8
    # activations symmetric int8
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        zero = numpy_helper.to_array(inits[q.input[2]])
        assert zero.dtype == np.int8 and not zero.any()


def test_rule_checker_catches_violations(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact("bert", "text-classification")
    cpu_model, _ = _int8(art, tmp_path, "cpu")  # asymmetric activations: not TensorRT's rule set
    problems = tensorrt_rule_violations(cpu_model)
    assert problems and any("not symmetric" in p for p in problems)
    trt_model, _ = _int8(art, tmp_path / "trt", "tensorrt")
    layer_norm = next(n for n in trt_model.graph.node if n.op_type == "LayerNormalization")
    dq = next(n for n in trt_model.graph.node if n.op_type == "DequantizeLinear")
    layer_norm.input[0] = dq.output[0]  # a DQ feeding LayerNorm breaks rule 2
    assert any("feeds LayerNormalization" in p for p in tensorrt_rule_violations(trt_model))


def test_weights_are_7_bit_where_the_cpu_int8_kernels_saturate(artifact: Callable[..., Artifact], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without VNNI, x86 int8 kernels add u8 x s8 products pairwise in int16 (vpmaddubsw): full-range weights
    saturate, 7-bit ones (|w| <= 64) cannot. GPU rule sets keep 8 bits; an explicit reduce_range wins."""
    import encoderforge.graph_passes.quantize_static as static
    from encoderforge.cpu import CpuFeatures

    def weights(model: onnx.ModelProto) -> int:
        inits = {i.name: i for i in model.graph.initializer}
        return max(int(np.abs(numpy_helper.to_array(inits[n.input[0]]).astype(np.int32)).max())
                   for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and inits[n.input[0]].data_type == onnx.TensorProto.INT8)

    art = artifact("bert", "text-classification")
    avx2 = CpuFeatures("fake AVX2 EPYC", frozenset({"avx2", "fma"}), "x86_64")
    vnni = CpuFeatures("fake VNNI EPYC", frozenset({"avx2", "avx512f", "avx512_vnni"}), "x86_64")
    monkeypatch.setattr(static, "current_cpu", lambda: avx2)
    model, result = _int8(art, tmp_path / "avx2")
    assert weights(model) <= 64 and result.details["reduce_range"] is True
    assert any("7-bit" in note for note in result.notes)
    trt, trt_result = _int8(art, tmp_path / "trt", "tensorrt")
    assert weights(trt) == 127 and trt_result.details["reduce_range"] is False
    monkeypatch.setattr(static, "current_cpu", lambda: vnni)
    full, full_result = _int8(art, tmp_path / "vnni")
    assert weights(full) == 127 and full_result.details["reduce_range"] is False
    forced, _ = _int8(art, tmp_path / "forced", reduce_range=True)
    assert weights(forced) <= 64


def test_groups() -> None:
    assert group_of("/model/encoder/layer.11/attention/self/query/MatMul") == "layer.11"
    assert group_of("/model/embeddings/word_embeddings/MatMul") == "embeddings"
    assert group_of("/qa_outputs/MatMul") == "head"


def test_accuracy_budget_keeps_sensitive_nodes(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    art = artifact("camembert", "token-classification")
    source = onnx.load(str(art.model_path))
    feeds = fidelity_feeds(art)
    full, _ = _int8(art, tmp_path / "full")
    full_drop = compare_models(source, full, feeds, artifact=art).accuracy_drop
    assert full_drop > 0
    budget = full_drop / 3
    model, result = _int8(art, tmp_path / "budget", max_accuracy_drop=budget)
    sweep = result.details["sweep"]
    assert result.counts["excluded_nodes"] > 0 and sweep["excluded_groups"]
    assert set(sweep["sensitivity"]) == set(node_groups(source, QUANTIZED_OPS))
    assert sweep["final_drop"] <= budget < sweep["full_quantization_drop"]
    measured = compare_models(source, model, feeds, artifact=art).accuracy_drop
    assert measured <= budget  # the bound holds on the held-out text the optimize report uses
    assert result.counts["quantized_nodes"] > 0  # still INT8 where it is safe
    _, loose_result = _int8(art, tmp_path / "loose", max_accuracy_drop=1.0)
    assert loose_result.counts["excluded_nodes"] == 0


def test_minilm_int8_embeddings_and_retrieval(minilm_artifact: Artifact, tmp_path: Path) -> None:
    source = onnx.load(str(minilm_artifact.model_path))
    model, _ = _int8(minilm_artifact, tmp_path, calibration_method="percentile", calibration_samples=64)
    texts = sentence_corpus(600)
    feeds = fidelity_feeds(minilm_artifact, texts=texts, batch_size=50, count=100)

    def embed(graph: onnx.ModelProto) -> np.ndarray:
        outs = run_model(make_session(graph), feeds)
        return np.concatenate([mean_pool(o["last_hidden_state"], f["attention_mask"]) for o, f in zip(outs, feeds)])

    ref, got = embed(source), embed(model)
    assert ref.shape == (600, 384)
    cosine = np.sum(ref * got, axis=1)
    assert cosine.mean() >= 0.99, f"mean cosine {cosine.mean():.4f}"
    assert np.percentile(cosine, 5) >= 0.98, f"5th percentile cosine {np.percentile(cosine, 5):.4f}"

    def top10(emb: np.ndarray) -> np.ndarray:
        sims = emb @ emb.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :10]

    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top10(ref), top10(got))])
    assert overlap >= 0.9, f"top-10 overlap {overlap:.3f}"


def test_smoothing_is_exact_in_fp32(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    """The opt-in SmoothQuant rewrite (smooth_quant_alpha) is an identity in fp32 and still quantizes."""
    from encoderforge.calibration.smoothing import smooth
    from encoderforge.calibration.sources import calibration_feeds

    art = artifact("bert", "token-classification")
    source = onnx.load(str(art.model_path))
    smoothed, count = smooth(source, calibration_feeds(art, None, samples=8), alpha=0.5)
    assert count >= 4
    report = compare_models(source, smoothed, fidelity_feeds(art, count=4))
    assert report.max_abs_diff < 1e-4
    model, result = _int8(art, tmp_path, smooth_quant_alpha=0.5)
    assert result.counts["smoothed_activations"] == count
    assert INT8.violations(compare_models(source, model, fidelity_feeds(art, count=4))) == []

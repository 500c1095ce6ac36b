"""The OpenVINO backend: every family x head gives ONNX Runtime's outputs (f32: 1e-4; bf16: within bf16's
rounding), every pipeline answers as on ONNX Runtime, the KV-cache graph and external data load, precision
follows the CPU flags (faked here), static-length variants change nothing, and ORT-only graphs are refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from encoderforge.artifact import Artifact
from encoderforge.cpu import read_cpu
from encoderforge.errors import InputError, UnsupportedError
from encoderforge.runtime import load
from encoderforge.runtime.backends import get_backend
from encoderforge.runtime.backends.compat import engines_for, graph_ops, read_ops, refusal
from encoderforge.runtime.backends.openvino import OpenVinoBackend, OpenVinoOptions, cpu_precision
from tests.conftest import FAMILY_HEADS
from tests.test_runtime_pipelines import PAIRS, TEXTS, close

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install 'encoderforge[openvino]')")

F32_ATOL = 1e-4
# bf16 keeps 8 mantissa bits (relative rounding 2^-9 per op): through 2 tiny layers the logits move by at most
# ~3% of their own range; a wrong graph (a dropped mask, a swapped output) moves them by far more.
BF16_RELATIVE = 0.03


def _feed(artifact: Artifact, seed: int = 0) -> dict[str, np.ndarray]:
    """A padded batch of random token ids in the artifact's input layout."""
    rng = np.random.default_rng(seed)
    shape = (3, 2, 24) if artifact.task == "multiple-choice" else (3, 24)
    feed: dict[str, np.ndarray] = {}
    for name in artifact.input_names:
        if name == "input_ids":
            feed[name] = rng.integers(5, 60, shape, dtype=np.int64)
        elif name == "position_ids":
            feed[name] = np.broadcast_to(np.arange(shape[-1], dtype=np.int64), shape).copy()
        elif name == "token_type_ids":
            feed[name] = np.zeros(shape, dtype=np.int64)
        else:
            feed[name] = np.ones(shape, dtype=np.int64)
    if artifact.task != "text-generation":  # padding-free for the causal graph, whose positions are absolute
        feed["attention_mask"][0, ..., 17:] = 0
    return feed


def _ort(artifact: Artifact, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return get_backend("onnxruntime-cpu").load(artifact).run(feed)


def test_cpu_precision_from_flags() -> None:
    assert cpu_precision({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}) == "bf16"  # AMD Zen4
    assert cpu_precision({"avx2", "amx_tile", "amx_bf16", "amx_int8"}) == "bf16"  # Intel Sapphire Rapids
    assert cpu_precision({"avx2", "avx512f", "avx512_vnni"}) == "f32"  # Cascade Lake, Zen3 + VNNI
    assert cpu_precision(set()) == "f32"
    text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert read_cpu(text=text).flags == {"fpu", "avx2", "amx_bf16"}  # the first CPU's flags, as cpu.py reads them
    assert cpu_precision(read_cpu(text=text).flags) == "bf16"
    assert cpu_precision(read_cpu(text="no flags here").flags) == "f32"
    assert OpenVinoOptions(precision="auto").resolved_precision({"avx512_bf16"}) == "bf16"
    assert OpenVinoOptions(precision="auto").resolved_precision({"avx2"}) == "f32"
    assert OpenVinoOptions(precision="f32").resolved_precision({"amx_bf16"}) == "f32"


@pytest.mark.parametrize(("family", "task"), FAMILY_HEADS)
def test_outputs_equal_onnxruntime(family: str, task: str, artifact: Callable[..., Artifact]) -> None:
    art = artifact(family, task)
    feed = _feed(art)
    expected = _ort(art, feed)
    for precision in ("f32", "bf16"):
        with OpenVinoBackend().load(art, precision=precision, intra_op_threads=1) as session:
            assert session.precision == precision
            got = session.run(feed)
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert got[name].shape == value.shape and got[name].dtype == value.dtype, name
            error = float(np.abs(got[name] - value).max())
            bound = F32_ATOL if precision == "f32" else BF16_RELATIVE * float(np.ptp(value)) + 1e-3
            assert error <= bound, f"{family}/{task} {name} at {precision}: max error {error:.3g} > {bound:.3g}"


def _call(task: str, pipe: Any) -> Any:
    """One representative call per task head."""
    if task == "question-answering":
        return [pipe(question=p["text"], context=p["text_pair"], top_k=2) for p in PAIRS]
    if task == "multiple-choice":
        return pipe("Where does Emmanuel Macron live?", ["À Paris.", "In Tokyo 東京", "On the moon 🚀"])
    if task == "fill-mask":
        mask = pipe.mask_token
        return pipe([f"Paris is the {mask} of France.", f"The {mask} was great 🎉."], top_k=3)
    if task == "text-generation":
        return pipe("The museum in Lyon holds", max_new_tokens=6, return_tensors=True)
    if task == "token-classification":
        return pipe(TEXTS[:4], aggregation_strategy="simple", ignore_labels=[])
    if task == "feature-extraction":
        return [np.asarray(v).tolist() for v in pipe(TEXTS[:3], batch_size=2)]
    return pipe(TEXTS[:4] + PAIRS[:1], top_k=None, batch_size=2)


@pytest.mark.parametrize(("family", "task"), FAMILY_HEADS)
def test_pipelines_answer_as_on_onnxruntime(family: str, task: str, artifact: Callable[..., Artifact]) -> None:
    art = artifact(family, task)
    with load(art.path, backend="openvino", precision="f32") as ours, load(art.path, device="cpu") as theirs:
        assert ours.session.backend == "openvino"
        close(_call(task, ours), _call(task, theirs))


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_kv_cache_graph_runs_on_openvino(family: str, tmp_path: Path, checkpoint: Callable[..., Path]) -> None:
    from encoderforge.exporters import ExportConfig, export

    art = export(ExportConfig(model=str(checkpoint(family, "text-generation")), task="causal-lm",
                              output=tmp_path / "gen", with_past=True))
    ids = [5, 17, 23, 9]
    with load(art.path, backend="openvino", precision="f32") as ours, load(art.path, device="cpu") as theirs:
        cached = ours.generate_ids(ids, max_new_tokens=8, use_cache=True)
        assert cached == theirs.generate_ids(ids, max_new_tokens=8, use_cache=True)
        assert ours._past_session is not None and ours._past_session.backend == "openvino"
        assert cached == ours.generate_ids(ids, max_new_tokens=8, use_cache=False)


def test_external_data_graph(tmp_path: Path, artifact: Callable[..., Artifact]) -> None:
    import dataclasses
    import shutil

    from encoderforge.artifact import write_manifest

    art = artifact("rembert", "token-classification")
    copy = tmp_path / "external"
    shutil.copytree(art.path, copy)
    graph = onnx.load(str(copy / "model.onnx"))
    onnx.save_model(graph, str(copy / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    assert (copy / "model.onnx.data").stat().st_size > (copy / "model.onnx").stat().st_size
    write_manifest(copy, dataclasses.replace(art.manifest, external_data=True))
    feed = _feed(art)
    got = OpenVinoBackend().load(Artifact.load(copy), precision="f32").run(feed)
    for name, value in _ort(art, feed).items():
        np.testing.assert_allclose(got[name], value, atol=F32_ATOL)


def test_static_sequence_variants(artifact: Callable[..., Artifact]) -> None:
    art = artifact("roberta", "token-classification")
    dynamic = OpenVinoBackend().load(art, precision="f32")
    static = OpenVinoBackend().load(art, precision="f32", static_sequences=[16, 32])
    for length in (7, 24, 40):  # bucket 16, bucket 32, above every bucket: the dynamic model
        feed = {k: v[..., :length] for k, v in _feed(art).items()}
        want, got = dynamic.run(feed), static.run(feed)
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], atol=F32_ATOL)
    assert static.compiled_sequences() == [16, 32]
    assert dynamic.compiled_sequences() == []


def test_streams_run_calls_together_with_the_same_outputs(artifact: Callable[..., Artifact]) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    art = artifact("roberta", "feature-extraction")
    one = OpenVinoBackend().load(art, precision="f32")
    two = OpenVinoBackend().load(art, precision="f32", streams=2, intra_op_threads=2)
    assert (one.parallel_calls, two.parallel_calls) == (1, 2)
    inside, most, guard = 0, 0, threading.Lock()
    both_in = threading.Barrier(2, timeout=30)  # passes only if two calls are inside infer() at once

    class Counting:  # wraps an infer request: counts the calls inside infer() at the same time
        def __init__(self, request: Any) -> None:
            self.request = request

        def infer(self, arrays: dict[str, np.ndarray]) -> None:
            nonlocal inside, most
            with guard:
                inside += 1
                most = max(most, inside)
            both_in.wait()
            self.request.infer(arrays)
            with guard:
                inside -= 1

        def get_tensor(self, name: str) -> Any:
            return self.request.get_tensor(name)

    idle = two._requests[None]
    idle.put(Counting(idle.get()))
    idle.put(Counting(idle.get()))
    feeds = [_feed(art, seed) for seed in range(2)]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(two.run, feeds))
    assert most == 2
    for feed, outputs in zip(feeds, got):
        want = one.run(feed)
        for name in want:
            np.testing.assert_allclose(outputs[name], want[name], atol=F32_ATOL)
    # encode() sends its batches through both streams; the embeddings are those of one stream
    sentences = [f"sentence number {i} " + "word " * (i % 9) for i in range(40)]
    np.testing.assert_allclose(load(art.path, backend="openvino", precision="f32", streams=2).encode(
        sentences, batch_size=4), load(art.path, backend="openvino", precision="f32").encode(sentences, batch_size=4),
        atol=F32_ATOL)


def test_bad_options_and_closed_session(artifact: Callable[..., Artifact]) -> None:
    art = artifact("bert", "text-classification")
    with pytest.raises(UnsupportedError, match="unknown openvino option.*'threads'"):
        OpenVinoBackend().load(art, threads=2)
    with pytest.raises(UnsupportedError, match="unknown openvino precision 'int4'"):
        OpenVinoBackend().load(art, precision="int4")
    with pytest.raises(UnsupportedError, match="static_sequences"):
        OpenVinoBackend().load(art, static_sequences=[64, 32])
    with pytest.raises(UnsupportedError, match="is not a file of artifact"):
        OpenVinoBackend().load(art, graph="no/such/model.onnx")
    session = OpenVinoBackend().load(art)
    with pytest.raises(InputError, match="missing"):
        session.run({"input_ids": np.ones((1, 4), dtype=np.int64)})
    session.close()
    with pytest.raises(Exception, match="closed"):
        session.run(_feed(art))


def test_ort_only_graph_is_refused(tmp_path: Path, artifact: Callable[..., Artifact]) -> None:
    from encoderforge.graph_passes import OptimizeConfig, optimize

    source = artifact("bert", "question-answering")
    assert read_ops(source.model_path).standard_only
    fused = optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "fused", target="cpu",
                                    precision="fp32"))
    ops = read_ops(fused.model_path)
    assert not ops.standard_only and "com.microsoft::MultiHeadAttention" in dict(ops.contrib)
    assert list(fused.manifest.backends) == ["onnxruntime-cpu", "onnxruntime-cuda"]
    with pytest.raises(UnsupportedError) as caught:
        load(fused.path, backend="openvino")
    message = str(caught.value)
    assert "\n" not in message
    assert "'openvino' reads standard ONNX ops only" in message and "MultiHeadAttention x2" in message
    assert "onnxruntime-cpu" in message  # the fix
    assert refusal("tensorrt", ops) is not None and refusal("onnxruntime-cpu", ops) is None
    plain = optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "plain", target="tensorrt"))
    assert list(plain.manifest.backends) == ["onnxruntime-cpu", "onnxruntime-cuda", "openvino", "tensorrt"]
    assert engines_for(onnx.load(str(plain.model_path))) == list(plain.manifest.backends)
    assert graph_ops(onnx.load(str(plain.model_path))).describe() == ""

"""The onnxruntime CUDA backend: options, bucketing, padding and buffer reuse (checked on CPU buffers, no GPU),
the device choice (CUDA asked for and missing is an error, never a CPU fallback), and `gpu` tests that run
on a machine with onnxruntime-gpu and a GPU and skip elsewhere, saying why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from encoderforge.artifact import Artifact
from encoderforge.errors import InputError, UnsupportedError
from encoderforge.runtime import choose_backend, load
from encoderforge.runtime.backends import get_backend
from encoderforge.runtime.backends.onnxruntime_cuda import CudaOptions, OrtCudaSession
from encoderforge.runtime.backends.padding import bucket_for, feed_shape, pad_feed, trim

CUDA_REASON = get_backend("onnxruntime-cuda").available()
needs_cuda = pytest.mark.skipif(CUDA_REASON is not None, reason=f"onnxruntime CUDA unavailable: {CUDA_REASON}")


# ---------------------------------------------------------------------------------------------------------
# Options and bucketing (pure)


def test_options_validate_buckets_and_graph_needs_bucketing() -> None:
    with pytest.raises(UnsupportedError, match="increasing positive"):
        CudaOptions(sequence_buckets=(128, 64))
    with pytest.raises(UnsupportedError, match="increasing positive"):
        CudaOptions(batch_buckets=())
    with pytest.raises(UnsupportedError, match="needs bucketing=True"):
        CudaOptions(cuda_graph=True, bucketing=False)
    with pytest.raises(UnsupportedError, match=r"unknown onnxruntime option\(s\) \['cuda_graphs'\]; valid: .*cuda_graph"):
        CudaOptions.from_kwargs({"cuda_graphs": True})
    assert CudaOptions.from_kwargs({"cuda_graph": True}).provider_options() == {
        "device_id": "0", "enable_cuda_graph": "1"}


def test_bucket_choice() -> None:
    options = CudaOptions()
    assert options.bucket(3, 70) == (4, 128)
    assert options.bucket(1, 16) == (1, 16)
    assert options.bucket(1, 513) is None  # above the largest bucket: run as it is
    assert options.bucket(200, 10) is None
    assert CudaOptions(bucketing=False).bucket(3, 70) is None
    assert bucket_for(5, (1, 2, 4, 8)) == 8 and bucket_for(9, (1, 2, 4, 8)) is None


def test_pad_feed_and_trim() -> None:
    feed = {"input_ids": np.array([[5, 6, 7], [8, 9, 0]]), "attention_mask": np.array([[1, 1, 1], [1, 1, 0]])}
    padded = pad_feed(feed, 4, 8)
    assert padded["input_ids"].shape == (4, 8)
    assert padded["attention_mask"][:2, 3:].sum() == 0  # extra positions are masked out
    np.testing.assert_array_equal(padded["input_ids"][2], padded["input_ids"][0])  # extra rows repeat row 0
    value = np.arange(4 * 8 * 3).reshape(4, 8, 3)
    assert trim(value, ["batch", "sequence", None], 2, 3, 8).shape == (2, 3, 3)
    assert trim(value, None, 2, 3, 8).shape == (2, 3, 3)  # no axes: the padded length marks the sequence axis
    logits = np.zeros((4, 8))  # e.g. (batch, num_labels) where num_labels equals the padded length
    assert trim(logits, ["batch", 8], 2, 3, 8).shape == (2, 8)  # a fixed axis is never cut
    assert trim(logits, ["batch", "num_choices"], 2, 3, 8).shape == (2, 8)
    assert trim(logits, ["batch", "unk__1"], 2, 3, 8).shape == (2, 3)  # unnamed dynamic axis of padded length
    choices = {"input_ids": np.ones((2, 3, 5), dtype=np.int64)}
    assert pad_feed(choices, 2, 16)["input_ids"].shape == (2, 3, 16)
    with pytest.raises(InputError, match="larger than the bucket"):
        pad_feed(feed, 1, 8)
    with pytest.raises(InputError, match="share one"):
        feed_shape({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))})


# ---------------------------------------------------------------------------------------------------------
# The bucketed IO-binding session, with its buffers on the CPU


def _plain(model: Artifact) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(model.model_path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("family,task", [("roberta", "question-answering"), ("bert", "token-classification"),
                                         ("bert", "multiple-choice")])
def test_bucketed_binding_matches_plain_run(artifact: Callable[..., Artifact], family: str, task: str) -> None:
    """Padding to buckets and trimming back gives the unpadded outputs; a few bound shapes serve all requests."""
    model = artifact(family, task)
    session = _plain(model)
    bucketed = OrtCudaSession(session, CudaOptions(sequence_buckets=(8, 16, 32), batch_buckets=(1, 2, 4)),
                              device="cpu")
    rng = np.random.default_rng(0)
    names = [i.name for i in session.get_inputs()]
    middle = (3,) if task == "multiple-choice" else ()
    for batch, length in [(1, 5), (3, 7), (2, 12), (1, 6), (4, 30), (3, 5)]:
        shape = (batch, *middle, length)
        feed = {n: np.zeros(shape, dtype=np.int64) for n in names}
        feed["input_ids"] = rng.integers(5, 50, size=shape)
        feed["attention_mask"] = np.ones(shape, dtype=np.int64)
        feed["attention_mask"][..., length - 1:] = 0 if length > 2 else 1  # a padded last position
        expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        got = bucketed.run(feed)
        for name, value in expected.items():  # masked extra keys change nothing, padded or not
            assert got[name].shape == value.shape, name
            np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-4)
    assert len(bucketed.bound_shapes) <= 4  # (1,8) (4,8) (2,16) (4,32): reused, not one per request
    bucketed.close()


def test_session_rejects_a_wrong_feed(artifact: Callable[..., Artifact]) -> None:
    session = OrtCudaSession(_plain(artifact("roberta", "question-answering")), CudaOptions(), device="cpu")
    with pytest.raises(InputError, match="the graph takes"):
        session.run({"input_ids": np.ones((1, 4), dtype=np.int64)})


# ---------------------------------------------------------------------------------------------------------
# Device choice


def test_cuda_without_a_gpu_is_an_error_not_a_cpu_fallback(artifact: Callable[..., Artifact]) -> None:
    if CUDA_REASON is None:
        pytest.skip("this machine has onnxruntime CUDA: the error path cannot be seen here")
    model = artifact("roberta", "question-answering")
    assert choose_backend("cuda", None, model) == "onnxruntime-cuda"
    assert choose_backend("auto", None, model) == "onnxruntime-cpu"
    with pytest.raises(UnsupportedError, match=r"backend 'onnxruntime-cuda' is unavailable: .*onnxruntime-gpu"):
        load(model.path, device="cuda")


# ---------------------------------------------------------------------------------------------------------
# On a GPU (marker gpu): run with `pytest -m gpu` on a machine with onnxruntime-gpu


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_pipeline_matches_cpu(artifact: Callable[..., Artifact], cuda_graph: bool) -> None:
    model = artifact("roberta", "question-answering")
    question, context = "Who wrote it?", "Herman Melville wrote Moby-Dick in 1851, after years at sea."
    with load(model.path, device="cpu") as cpu:
        expected = cpu(question=question, context=context)
    try:
        gpu = load(model.path, device="cuda", cuda_graph=cuda_graph)
    except Exception as exc:  # onnxruntime refuses CUDA graphs when a node falls back to the CPU
        if cuda_graph:
            pytest.skip(f"CUDA graph capture refused for this graph: {exc}")
        raise
    with gpu:
        assert gpu.session.backend == "onnxruntime-cuda"
        for _ in range(3):  # capture, then replay
            got = gpu(question=question, context=context)
            assert got["answer"] == expected["answer"]
            assert got["score"] == pytest.approx(expected["score"], abs=1e-3)


@pytest.mark.gpu
@needs_cuda
def test_cuda_session_matches_cpu_on_many_lengths(artifact: Callable[..., Artifact]) -> None:
    model = artifact("bert", "token-classification")
    cpu = _plain(model)
    gpu = get_backend("onnxruntime-cuda").load(model)
    rng = np.random.default_rng(1)
    for batch, length in [(1, 3), (2, 17), (5, 40), (1, 100)]:
        feed = {i.name: np.zeros((batch, length), dtype=np.int64) for i in cpu.get_inputs()}
        feed["input_ids"] = rng.integers(5, 50, size=(batch, length))
        feed["attention_mask"] = np.ones((batch, length), dtype=np.int64)
        expected = cpu.run(None, feed)[0]
        np.testing.assert_allclose(gpu.run(feed)["logits"], expected, atol=1e-3, rtol=1e-3)
    gpu.close()

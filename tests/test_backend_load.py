"""Backends take the Artifact: `load(artifact, **options)` runs its graph (or another graph file it lists)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from encoderforge.artifact import Artifact
from encoderforge.errors import UnsupportedError
from encoderforge.runtime.backends import BACKENDS, SessionBase, get_backend


def test_onnxruntime_loads_the_artifact_graph(artifact: Callable[..., Artifact]) -> None:
    art = artifact("bert", "text-classification")
    with get_backend("cpu").load(art, intra_op_threads=1) as session:
        assert isinstance(session, SessionBase) and session.backend == "onnxruntime-cpu"
        assert [i.name for i in session.inputs()] == art.input_names
        ids = np.array([[2, 7, 8, 3]], dtype=np.int64)
        out = session.run({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
        assert list(out) == art.output_names and out["logits"].shape[0] == 1


def test_graph_option_names_a_file_of_the_artifact(artifact: Callable[..., Artifact]) -> None:
    art = artifact("bert", "text-classification")
    with get_backend("onnxruntime-cpu").load(art, graph="model.onnx") as session:
        assert session.outputs()[0].name == "logits"
    with pytest.raises(UnsupportedError, match=r"graph 'other.onnx' is not a file of artifact .*choose one of \['model.onnx'\]"):
        get_backend("onnxruntime-cpu").load(art, graph="other.onnx")
    with pytest.raises(UnsupportedError, match=r"unknown onnxruntime option\(s\) \['threads'\]"):
        get_backend("onnxruntime-cpu").load(art, threads=2)


def test_every_backend_is_registered_once() -> None:
    assert {"onnxruntime-cpu", "onnxruntime-cuda", "tensorrt"} <= set(BACKENDS)
    assert all(get_backend(name).name == name for name in BACKENDS)

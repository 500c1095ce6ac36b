"""`encoderforge triton-repo`: configs valid against Triton's model_config.proto, the ensemble's Python models
answering like the pipeline in-process, and the Python-backend repository loading and answering in the
tritonserver binary shipped by nvidia-pytriton."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoderforge.serving.ensemble import Model, Postprocess, Tokenize, bucket
from encoderforge.serving.repo import RepoConfig, pbtxt, write_repository
from encoderforge.serving.tasks import ServingError

TASKS = {"qa": ("roberta", "question-answering"), "ner": ("bert", "token-classification"),
         "cls": ("bert", "text-classification"), "embed": ("bert", "feature-extraction")}
ROWS = {"question": ["Where did the cat sit?", "Who sat?"],
        "context": ["The cat sat on the mat in Paris.", "A dog sat there."],
        "text": ["The cat sat on the mat in Paris.", "Hello world"]}


def test_pbtxt_writes_protobuf_text_format() -> None:
    text = pbtxt({"name": "m", "max_batch_size": 8, "input": [{"name": "a", "data_type": "TYPE_STRING",
                                                                  "dims": (1,)}], "flag": True})
    assert text == ('name: "m"\nmax_batch_size: 8\ninput {\n  name: "a"\n  data_type: TYPE_STRING\n'
                    '  dims: [ 1 ]\n}\nflag: true\n')


def test_length_buckets() -> None:
    assert [bucket(n, 512) for n in (1, 16, 17, 100, 300)] == [16, 16, 32, 128, 512]
    assert bucket(40, 64) == 64 and bucket(70, 64) == 70


@pytest.mark.parametrize("variant", ["onnxruntime", "python"])
def test_configs_parse_against_tritons_model_config_proto(
    tmp_path: Path, artifact: Callable[..., Any], variant: str
) -> None:
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                           reason="needs tritonclient[grpc] (serve extra)")
    from google.protobuf import text_format

    repo = tmp_path / "repo"
    for name in ("qa", "ner"):
        write_repository(RepoConfig(artifact=str(artifact(*TASKS[name]).path), output=repo, name=name,
                                    variant=variant, max_batch=16, max_queue_delay_ms=5, instances=2, kind="gpu"))
    configs = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        configs[path.parent.name] = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    assert sorted(configs) == sorted(f"{n}{s}" for n in ("qa", "ner") for s in ("", "_tokenize", "_model",
                                                                                  "_postprocess"))
    graph = configs["qa_model"]
    assert graph.max_batch_size == 16 and graph.dynamic_batching.max_queue_delay_microseconds == 5000
    assert graph.instance_group[0].count == 2
    assert graph.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [tuple(o.dims) for o in graph.output] == [(-1,), (-1,)]
    if variant == "onnxruntime":
        assert graph.backend == "onnxruntime" and graph.optimization.graph.level == 1
        assert (repo / "qa_model" / "1" / "model.onnx").is_file()
    else:
        assert graph.backend == "python" and (repo / "qa_model" / "1" / "artifact" / "model.onnx").is_file()
    ensemble = configs["ner"]
    assert ensemble.platform == "ensemble"
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["ner_tokenize", "ner_model", "ner_postprocess"]
    for step in steps:  # every step's tensors exist on the model it names
        model = configs[step.model_name]
        assert set(step.input_map) <= {t.name for t in model.input}
        assert set(step.output_map) <= {t.name for t in model.output}
    assert [o.data_type for o in ensemble.output] == [model_config_pb2.TYPE_STRING]
    with pytest.raises(ServingError, match="--force"):
        write_repository(RepoConfig(artifact=str(artifact(*TASKS["qa"]).path), output=repo, name="qa"))


@pytest.mark.parametrize("name", list(TASKS))
def test_ensemble_models_answer_like_the_pipeline(artifact: Callable[..., Any], name: str) -> None:
    import encoderforge
    from encoderforge.serving.tasks import task_io

    path = artifact(*TASKS[name]).path
    io = task_io(TASKS[name][1])
    rows = {n: ROWS[n] for n in io.inputs}
    wire = {n: np.array([[t.encode()] for t in texts], dtype=object) for n, texts in rows.items()}
    feeds = Tokenize(path)(wire)
    assert feeds["input_ids"].shape[1] in (16, 32, 64)  # padded to a length bucket
    outputs = Model(path)(feeds)
    answers = Postprocess(path)({**wire, **feeds, **outputs})
    expected = io.run(encoderforge.load(path, device="cpu"), rows)
    for spec in io.outputs:
        if spec.dtype == "FP32":
            np.testing.assert_allclose(answers[spec.name], np.stack([e[spec.name] for e in expected]), atol=1e-5)
        else:
            got = [json.loads(v[0]) for v in answers[spec.name]]
            want = [json.loads(e[spec.name][0]) for e in expected]
            assert _close(got, want)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - float(b)) <= 1e-4
    return bool(a == b)


def test_python_backend_repository_answers_in_the_shipped_tritonserver(
    tmp_path: Path, artifact: Callable[..., Any]
) -> None:
    pytest.importorskip("pytriton", reason="the shipped tritonserver comes with the serve extra")
    httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient (serve extra)")
    from tritonclient.utils import InferenceServerException

    import encoderforge
    from encoderforge.serving.repo import launch_tritonserver

    repo = tmp_path / "repo"
    for name in ("qa", "cls"):
        write_repository(RepoConfig(artifact=str(artifact(*TASKS[name]).path), output=repo, name=name,
                                    variant="python"))
    sockets = [socket.socket() for _ in range(3)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    http, grpc, metrics = (s.getsockname()[1] for s in sockets)
    for s in sockets:
        s.close()

    def inputs(**columns: list[str]) -> list[Any]:
        tensors = []
        for column, texts in columns.items():
            array = np.array([[t.encode()] for t in texts], dtype=object)
            tensor = httpclient.InferInput(column, list(array.shape), "BYTES")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    with launch_tritonserver(repo, http_port=http, grpc_port=grpc, metrics_port=metrics):
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        try:
            assert client.is_model_ready("qa") and client.is_model_ready("cls_model")
            answer = client.infer("qa", inputs(question=ROWS["question"][:1], context=ROWS["context"][:1]))
            expected = encoderforge.load(artifact(*TASKS["qa"]).path, device="cpu")(
                question=ROWS["question"][:1], context=ROWS["context"][:1])
            expected = expected[0] if isinstance(expected, list) else expected
            assert _close(json.loads(answer.as_numpy("result")[0][0]), json.loads(json.dumps(expected)))
            label = json.loads(client.infer("cls", inputs(text=["a sentence"])).as_numpy("result")[0][0])
            assert "label" in label
            with pytest.raises(InferenceServerException, match="empty"):
                client.infer("cls", inputs(text=["  "]))
        finally:
            client.close()

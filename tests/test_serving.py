"""`encoderforge serve`: the request handling on its own, then a real Triton (PyTriton) on loopback answering
QA, NER, classification and embeddings through tritonclient, with dynamic batching, bad requests and deadlines."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoderforge.errors import InputError
from encoderforge.serving.tasks import ServingError, TaskIO, TensorSpec, decode_text, run_rows, task_io
from encoderforge.serving.triton import ERROR_KEY, libpython_dir, make_infer, model_name, prepare_environment

# ---- request handling, no server -------------------------------------------------------------------------


class EchoPipeline:
    """Stands in for a text pipeline: answers each text with its length; 'boom' is an InputError."""

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        if "boom" in texts:
            raise InputError("boom is not allowed")
        return [{"length": len(t)} for t in texts]


def _request(*texts: bytes) -> dict[str, np.ndarray]:
    return {"text": np.array([[t] for t in texts], dtype=object)}


def test_decode_text_rejects_empty_oversized_and_non_utf8() -> None:
    assert decode_text(b"hi", "text[0]", max_bytes=10) == "hi"
    with pytest.raises(InputError, match="empty"):
        decode_text(b"  ", "text[0]", max_bytes=10)
    with pytest.raises(InputError, match="more than the limit of 10"):
        decode_text(b"x" * 11, "text[0]", max_bytes=10)
    with pytest.raises(InputError, match="UTF-8"):
        decode_text(b"\xff\xfe", "text[0]", max_bytes=10)


def test_one_bad_request_fails_alone() -> None:
    infer = make_infer(task_io("text-classification"), EchoPipeline(), max_text_bytes=100)
    responses = infer([_request(b"abc", b"de"), _request(b""), {"wrong": np.array([[b"x"]], dtype=object)},
                       _request(b"boom"), _request(b"x" * 101), _request(b"fine")])
    assert [json.loads(v[0]) for v in responses[0]["result"]] == [{"length": 3}, {"length": 2}]
    assert b"empty" in responses[1][ERROR_KEY][0]
    assert b"missing input" in responses[2][ERROR_KEY][0]
    assert b"boom is not allowed" in responses[3][ERROR_KEY][0]
    assert b"limit of 100" in responses[4][ERROR_KEY][0]
    assert json.loads(responses[5]["result"][0][0]) == {"length": 4}


def test_run_rows_isolates_the_row_the_pipeline_rejects() -> None:
    io = TaskIO("t", ("text",), (TensorSpec("result", "BYTES", (1,)),), task_io("fill-mask").run)
    answers = run_rows(io, EchoPipeline(), {"text": ["a", "boom", "ccc"]})
    assert isinstance(answers[1], InputError)
    assert [json.loads(a["result"][0]) for a in (answers[0], answers[2])] == [{"length": 1}, {"length": 3}]


def test_model_names_come_from_the_directory_or_name_equals_path(tmp_path: Path) -> None:
    used: set[str] = set()
    assert model_name(str(tmp_path / "roberta qa+int8"), used)[0] == "roberta-qa-int8"
    assert model_name(f"qa={tmp_path / 'x'}", used) == ("qa", tmp_path / "x")
    with pytest.raises(ServingError, match="both named 'qa'"):
        model_name(f"qa={tmp_path / 'y'}", used)
    with pytest.raises(Exception, match="not be served|servable"):
        task_io("multiple-choice")


def test_libpython_of_this_interpreter_goes_first_on_ld_library_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/somewhere/else")
    directory = prepare_environment()
    assert directory == libpython_dir()
    assert any(directory.glob("libpython3*.so*"))
    import os

    assert os.environ["LD_LIBRARY_PATH"].split(":") == [str(directory), "/somewhere/else"]


# ---- a real Triton on loopback ----------------------------------------------------------------------------

TASKS = {"qa": ("roberta", "question-answering"), "ner": ("bert", "token-classification"),
         "cls": ("bert", "text-classification"), "embed": ("bert", "feature-extraction")}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def server(artifact: Callable[..., Any]) -> Iterator[Any]:
    pytest.importorskip("pytriton", reason="needs the serve extra: pip install 'encoderforge[serve]'")
    pytest.importorskip("tritonclient.http", reason="needs tritonclient (serve extra)")
    from encoderforge.serving.triton import ServeConfig, start

    specs = tuple(f"{name}={artifact(*TASKS[name]).path}" for name in TASKS)
    http, grpc, metrics = free_ports(3)
    config = ServeConfig(artifacts=specs, http_port=http, grpc_port=grpc, metrics_port=metrics, max_batch=16,
                         max_queue_delay_ms=20, threads=1, shutdown_timeout_s=3, max_text_bytes=100_000)
    with start(config) as running:
        yield running


@pytest.fixture
def client(server: Any) -> Iterator[Any]:
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(server.http_url, concurrency=16)
    yield c
    c.close()


def _inputs(**columns: list[str]) -> list[Any]:
    import tritonclient.http as httpclient

    inputs = []
    for name, texts in columns.items():
        array = np.array([[t.encode()] for t in texts], dtype=object)
        tensor = httpclient.InferInput(name, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _post(server: Any, path: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{server.http_url}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _results(answer: Any) -> list[Any]:
    return [json.loads(v[0]) for v in answer.as_numpy("result")]


def test_serves_every_task_like_the_pipeline(server: Any, client: Any, artifact: Callable[..., Any]) -> None:
    import encoderforge

    texts = ["The cat sat on the mat in Paris.", "Hello world"]
    for name in ("cls", "ner"):
        pipeline = encoderforge.load(artifact(*TASKS[name]).path, device="cpu")
        served = _results(client.infer(name, _inputs(text=texts)))
        assert _same(served, json.loads(json.dumps(pipeline(texts))))
    qa = encoderforge.load(artifact(*TASKS["qa"]).path, device="cpu")
    question, context = ["Where did the cat sit?"], ["The cat sat on the mat in Paris."]
    served = _results(client.infer("qa", _inputs(question=question, context=context)))
    expected = qa(question=question, context=context)
    expected = expected if isinstance(expected, list) else [expected]
    assert _same(served, expected)
    embedder = encoderforge.load(artifact(*TASKS["embed"]).path, device="cpu")
    vectors = client.infer("embed", _inputs(text=texts)).as_numpy("embedding")
    np.testing.assert_allclose(vectors, embedder.encode(texts), atol=1e-5)


def _same(a: Any, b: Any) -> bool:
    """Equal JSON documents, floats to 1e-4."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return bool(abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b))))
    return bool(a == b)


def test_dynamic_batching_gathers_concurrent_requests(server: Any, client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    texts = [f"request number {i} " * (1 + i % 4) for i in range(48)]
    pending = [client.async_infer("cls", _inputs(text=["" if i % 12 == 5 else t])) for i, t in enumerate(texts)]
    good = bad = 0
    for i, request in enumerate(pending):
        if i % 12 == 5:
            with pytest.raises(InferenceServerException, match="empty"):
                request.get_result()
            bad += 1
        else:
            assert "label" in _results(request.get_result())[0]
            good += 1
    assert (good, bad) == (44, 4)
    stats = client.get_inference_statistics("cls")["model_stats"][0]
    assert stats["execution_count"] < stats["inference_count"], stats  # several requests per execution
    assert any(int(b["batch_size"]) > 1 for b in stats["batch_stats"]), stats["batch_stats"]


def test_bad_requests_get_4xx_with_a_message_and_the_server_stays_up(server: Any) -> None:
    def body(name: str, text: str, **extra: Any) -> bytes:
        tensor = {"name": name, "shape": [1, 1], "datatype": "BYTES", "data": [text]}
        return json.dumps({"inputs": [tensor], **extra}).encode()

    status, message = _post(server, "/v2/models/cls/infer", body("text", ""))
    assert status == 400 and "empty" in message
    status, message = _post(server, "/v2/models/cls/infer", body("text", "x" * 10_000_000))
    assert status == 400 and "limit" in message
    status, message = _post(server, "/v2/models/cls/infer", body("txt", "hello"))
    assert status == 400 and "txt" in message
    status, message = _post(server, "/v2/models/nope/infer", body("text", "hello"))
    assert status == 404 and "nope" in message
    status, message = _post(server, "/v2/models/cls/infer", b"{not json")
    assert status >= 400 and "JSON" in message  # Triton's own parser answers this one (500 in Triton 2.5x)
    status, message = _post(server, "/v2/models/cls/infer", body("text", "still fine"))
    assert status == 200 and "label" in message


def test_a_request_past_its_deadline_is_answered_with_a_timeout(server: Any) -> None:
    tensor = {"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["hello"]}
    status, message = _post(server, "/v2/models/cls/infer",
                            json.dumps({"inputs": [tensor], "parameters": {"timeout": 1}}).encode())
    assert status == 503 and "timeout" in message.lower()


def test_health_metrics_and_grpc(server: Any) -> None:
    import tritonclient.grpc as grpcclient

    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert "nv_inference_request_success" in response.read().decode()
    array = np.array([[b"over gRPC"]], dtype=object)
    tensor = grpcclient.InferInput("text", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        assert c.infer("embed", [tensor]).as_numpy("embedding").shape[0] == 1


def test_missing_libpython_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys
    import sysconfig

    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: str(tmp_path))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path))
    with pytest.raises(ServingError, match=r"libpython3\.\d+\.so .*--enable-shared"):
        libpython_dir()

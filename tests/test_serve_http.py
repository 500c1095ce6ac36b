"""`encoderforge serve` (Ray Serve): the wire rules on their own, then ONE server on loopback (2 replicas, every
task) answering tritonclient, the openai package and plain HTTP; bad requests; start-up faults of the CLI."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoderforge.errors import InputError
from encoderforge.serving import wire
from encoderforge.serving.tasks import task_io

# ---- the wire rules, no server ----------------------------------------------------------------------------


def _binary(*texts: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(t)) + t for t in texts)


def test_v2_json_and_binary_tensors_give_the_same_rows() -> None:
    io = task_io("question-answering")
    tensors = [{"name": "question", "shape": [2, 1], "datatype": "BYTES", "data": [["Who?"], ["Where?"]]},
               {"name": "context", "shape": [2], "datatype": "BYTES", "data": ["Ada wrote it.", "In Paris."]}]
    parsed = wire.parse_v2(json.dumps({"id": "7", "inputs": tensors}).encode(), None, io, max_text_bytes=100)
    assert parsed.rows == {"question": ["Who?", "Where?"], "context": ["Ada wrote it.", "In Paris."]}
    assert (parsed.count, parsed.request_id) == (2, "7")
    chunks = [_binary(b"Who?", b"Where?"), _binary(b"Ada wrote it.", b"In Paris.")]
    header = json.dumps({"inputs": [
        {"name": n, "shape": [2, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(c)}}
        for n, c in zip(("question", "context"), chunks)]}).encode()
    binary = wire.parse_v2(header + b"".join(chunks), str(len(header)), io, max_text_bytes=100)
    assert binary.rows == parsed.rows


@pytest.mark.parametrize(("body", "match"), [
    (b"{nope", "not valid JSON"),
    (b"[1]", "must be a JSON object"),
    (b'{"input": []}', "no `inputs`"),
    (b'{"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}', "'txt' is not an input"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}', "datatype 'FP32'"),
    (b'{"inputs": [{"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}', "shape"),
    (b'{"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}', "but 1 values"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}]}', "non-text"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [" "]}]}', "empty"),
    (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["xxxxxxxxxxx"]}]}', "limit of 10"),
    (b'{"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}', "at least one"),
])
def test_bad_v2_bodies_are_client_errors_naming_the_value(body: bytes, match: str) -> None:
    with pytest.raises(wire.ClientError, match=match) as caught:
        wire.parse_v2(body, None, task_io("text-classification"), max_text_bytes=10)
    assert caught.value.status == 400 and "\n" not in str(caught.value)


def test_binary_lengths_that_do_not_fit_are_client_errors() -> None:
    io = task_io("text-classification")
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    with pytest.raises(wire.ClientError, match="runs past"):
        wire.parse_v2(header + struct.pack("<I", 100) + b"abcd", str(len(header)), io, max_text_bytes=100)
    with pytest.raises(wire.ClientError, match="outside the body"):
        wire.parse_v2(header, "99999", io, max_text_bytes=100)


def test_openai_tei_and_predict_bodies() -> None:
    parsed = wire.parse_openai(b'{"model": "m", "input": "hi", "encoding_format": "base64"}', max_text_bytes=10)
    assert (parsed.model, parsed.texts, parsed.single, parsed.base64) == ("m", ["hi"], True, True)
    with pytest.raises(wire.ClientError, match="token arrays"):
        wire.parse_openai(b'{"model": "m", "input": [[1, 2]]}', max_text_bytes=10)
    with pytest.raises(wire.ClientError, match="encoding_format"):
        wire.parse_openai(b'{"model": "m", "input": "a", "encoding_format": "int8"}', max_text_bytes=10)
    vectors = np.array([[1.0, -2.5]], dtype=np.float32)
    encoded = wire.openai_response("m", vectors, as_base64=True)["data"][0]["embedding"]
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), vectors[0])
    assert wire.parse_tei(b'{"inputs": ["a", "b"], "normalize": false}', max_text_bytes=10).normalize is False
    with pytest.raises(wire.ClientError, match="normalize"):
        wire.parse_tei(b'{"inputs": "a", "normalize": "yes"}', max_text_bytes=10)
    assert wire.parse_predict(b'{"inputs": ["a"]}', max_text_bytes=10).single is False
    answers = [{"result": np.array([b'{"x": 1}'], dtype=object)}, {"result": np.array([b"[2]"], dtype=object)}]
    assert json.loads(wire.results_json(answers, single=False)) == [{"x": 1}, [2]]


def test_model_names_and_text_checks(tmp_path: Path) -> None:
    from encoderforge.serving.hosts import model_name
    from encoderforge.serving.tasks import ServingError, decode_text

    used: set[str] = set()
    assert model_name(str(tmp_path / "roberta qa+int8"), used)[0] == "roberta-qa-int8"
    assert model_name(f"qa={tmp_path / 'x'}", used) == ("qa", tmp_path / "x")
    with pytest.raises(ServingError, match="both named 'qa'"):
        model_name(f"qa={tmp_path / 'y'}", used)
    with pytest.raises(InputError, match="UTF-8"):
        decode_text(b"\xff\xfe", "text[0]", max_bytes=10)
    with pytest.raises(Exception, match="servable"):
        task_io("multiple-choice")


def test_fill_mask_answers_a_single_row_as_one_result() -> None:
    class OneMask:
        def __call__(self, texts: list[str]) -> Any:
            if "bad" in texts:
                raise InputError("no mask_token")
            results = [[{"token_str": t, "score": 0.5}] * 2 for t in texts]
            return results[0] if len(results) == 1 else results

    from encoderforge.serving.tasks import run_rows

    io = task_io("fill-mask")
    (one,) = run_rows(io, OneMask(), {"text": ["a"]})
    assert not isinstance(one, InputError) and len(json.loads(one["result"][0])) == 2
    answers = run_rows(io, OneMask(), {"text": ["a", "bad", "c"]})
    assert isinstance(answers[1], InputError) and not isinstance(answers[0], InputError)
    assert not isinstance(answers[2], InputError)
    (alone,) = run_rows(io, OneMask(), {"text": ["bad"]})  # a bucket of one bad row: its error, no raise
    assert isinstance(alone, InputError)


def test_a_batch_runs_in_length_buckets_and_answers_in_order() -> None:
    from encoderforge.serving.hosts import LockedSession, ModelHost, ModelSpec

    seen: list[list[str]] = []

    class Lengths:
        def __call__(self, texts: list[str]) -> list[dict[str, int]]:
            seen.append(list(texts))
            if "bad" in texts:
                raise InputError("bad is not allowed")
            return [{"length": len(t)} for t in texts]

    class NoSession:
        backend = "none"

    host = ModelHost(ModelSpec("m", Path("."), "text-classification", "none"), task_io("text-classification"),
                     LockedSession(NoSession()), bucket=2)  # type: ignore[arg-type]
    host.pipelines.put(Lengths())
    texts = ["a" * 9, "b", "c" * 8, "bad", "e" * 2]
    answers = host.run({"text": texts})
    assert [a if isinstance(a, InputError) else json.loads(a["result"][0])["length"] for a in answers][:3] == [9, 1, 8]
    assert isinstance(answers[3], InputError) and json.loads(answers[4]["result"][0])["length"] == 2  # type: ignore[index]
    assert seen[0] == ["a" * 9, "c" * 8]  # the two longest share a bucket


def test_padding_buckets_cut_where_padding_costs_more_than_a_call() -> None:
    from encoderforge.serving.hosts import padding_buckets

    lengths = [20, 20, 20, 80, 21, 19]
    assert padding_buckets(lengths, max_rows=32, call_cost=16) == [[3], [4, 0, 1, 2, 5]]  # 80 pads nobody
    assert padding_buckets(lengths, max_rows=32, call_cost=1000) == [[3, 4, 0, 1, 2, 5]]  # calls dearer than pads
    capped = padding_buckets(lengths, max_rows=2, call_cost=16)
    assert max(len(b) for b in capped) == 2 and sorted(i for b in capped for i in b) == list(range(6))
    assert padding_buckets([], max_rows=4) == []
    with pytest.raises(ValueError, match="max_rows"):
        padding_buckets([1], max_rows=0)


def test_rows_are_measured_in_the_pipelines_tokens(artifact: Callable[..., Any]) -> None:
    import encoderforge
    from encoderforge.serving.hosts import row_lengths

    pipeline = encoderforge.load(artifact("bert", "text-classification").path, device="cpu")
    texts = ["a", "internationalization of everything", "Paris is big."]
    expected = [len(e.ids) for e in pipeline.tokenizer.encode(texts)]
    assert row_lengths(pipeline, {"text": texts}, ("text",)) == expected
    assert row_lengths(object(), {"text": texts}, ("text",)) == [len(t) for t in texts]  # no tokenizer: characters


def test_cpu_sessions_run_calls_at_once_others_one_at_a_time() -> None:
    from encoderforge.runtime.backends import get_backend
    from encoderforge.serving.hosts import LockedSession

    class Meeting:  # each run waits until two runs are inside at once
        backend = "onnxruntime-cpu"
        barrier = threading.Barrier(2, timeout=30)

        def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.barrier.wait()
            return feed

    assert get_backend("onnxruntime-cpu").concurrent_calls
    assert not any(get_backend(name).concurrent_calls for name in ("onnxruntime-cuda", "openvino", "tensorrt"))
    session = LockedSession(Meeting(), concurrent=2)  # type: ignore[arg-type]
    feeds = [{"x": np.full(1, i)} for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        assert [int(r["x"][0]) for r in pool.map(session.run, feeds)] == [0, 1]  # a serialized run would break

    inside, most = [0], [0]
    guard = threading.Lock()

    class Counting:
        backend = "onnxruntime-cuda"

        def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            with guard:
                inside[0] -= 1
            return feed

    single = LockedSession(Counting())  # type: ignore[arg-type]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(single.run, [{"x": np.zeros(1)}] * 8))
    assert most[0] == 1


def test_session_threads_share_the_cores_among_concurrent_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    from encoderforge.serving.ray_serve import ServeConfig, replica_cpus, replica_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    config = ServeConfig(artifacts=("m",), replicas=2, workers=2)
    assert replica_threads(config, "onnxruntime-cpu") == 2  # 8 cores, 2 replicas x 2 concurrent calls
    assert replica_threads(config, "openvino") == 4  # one call at a time gets the replica's share
    assert replica_cpus(config) == 4
    pinned = ServeConfig(artifacts=("m",), threads=3, workers=2)
    assert (replica_threads(pinned, "onnxruntime-cpu"), replica_cpus(pinned)) == (3, 6)


# ---- one server on loopback ------------------------------------------------------------------------------

TINY = {"qa": ("roberta", "question-answering"), "ner": ("bert", "token-classification"),
        "cls": ("bert", "text-classification"), "mlm": ("roberta", "fill-mask")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(artifact: Callable[..., Any], minilm_artifact: Any) -> Iterator[Any]:
    pytest.importorskip("ray.serve", reason="needs the serve extra: pip install 'encoderforge[serve]'")
    from encoderforge.serving.ray_serve import ServeConfig, start

    # No package registry is reachable from here: serving must not need one.
    unreachable = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    saved = {k: os.environ.get(k) for k in unreachable}
    os.environ.update(unreachable)
    specs = tuple(f"{name}={artifact(*TINY[name]).path}" for name in TINY) + (f"minilm={minilm_artifact.path}",)
    config = ServeConfig(artifacts=specs, http_port=free_port(), replicas=2, threads=1, workers=2, max_batch=16,
                         max_queue_delay_ms=20, max_text_bytes=100_000, shutdown_timeout_s=10)
    try:
        with start(config) as running:
            yield running
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def request(server: Any, path: str, body: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(f"{server.url}{path}", data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def v2(text: str, name: str = "text") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}).encode()


def _same(a: Any, b: Any) -> bool:
    """Equal JSON documents, floats to 1e-4."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return bool(abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b))))
    return bool(a == b)


def _inputs(**columns: list[str]) -> list[Any]:
    import tritonclient.http as httpclient

    tensors = []
    for name, texts in columns.items():
        array = np.array([[t.encode()] for t in texts], dtype=object)
        tensor = httpclient.InferInput(name, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)  # binary tensor extension, tritonclient's default
        tensors.append(tensor)
    return tensors


def test_tritonclient_gets_every_task_as_the_pipeline_answers(server: Any, artifact: Callable[..., Any],
                                                               minilm_artifact: Any) -> None:
    tritonclient = pytest.importorskip("tritonclient.http")
    import encoderforge

    client = tritonclient.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_ready() and client.is_model_ready("qa")
    texts = ["The cat sat on the mat in Paris.", "Hello world"]
    for name, rows in (("cls", texts), ("ner", texts), ("mlm", ["The cat <mask> on the mat."])):
        pipeline = encoderforge.load(artifact(*TINY[name]).path, device="cpu")
        served = [json.loads(v[0]) for v in client.infer(name, _inputs(text=rows)).as_numpy("result")]
        expected = pipeline(rows)
        assert _same(served, json.loads(json.dumps([expected] if len(rows) == 1 else expected)))
    qa = encoderforge.load(artifact(*TINY["qa"]).path, device="cpu")
    answer = client.infer("qa", _inputs(question=["Where did the cat sit?"], context=["The cat sat on the mat."]))
    assert _same(json.loads(answer.as_numpy("result")[0][0]),
                 qa(question="Where did the cat sit?", context="The cat sat on the mat."))
    vectors = client.infer("minilm", _inputs(text=texts)).as_numpy("embedding")
    np.testing.assert_allclose(vectors, encoderforge.load(minilm_artifact.path, device="cpu").encode(texts), atol=1e-5)
    assert client.get_model_metadata("qa")["inputs"][1]["name"] == "context"
    client.close()


def test_openai_client_gets_the_runtimes_embeddings(server: Any, minilm_artifact: Any) -> None:
    openai = pytest.importorskip("openai")
    import encoderforge

    texts = ["A sentence to embed.", "Another, somewhat longer sentence to embed."]
    expected = encoderforge.load(minilm_artifact.path, device="cpu").encode(texts)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    answer = client.embeddings.create(model="minilm", input=texts)  # the client asks for base64 and decodes it
    np.testing.assert_allclose(np.array([d.embedding for d in answer.data]), expected, atol=1e-5)
    answer = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    np.testing.assert_allclose(np.array([d.embedding for d in answer.data]), expected, atol=1e-5)
    assert answer.model == "minilm" and [d.index for d in answer.data] == [0, 1]
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.embeddings.create(model="minilm", input="   ")


def test_tei_embed_and_predict(server: Any, artifact: Callable[..., Any], minilm_artifact: Any) -> None:
    import encoderforge

    status, vectors, _ = request(server, "/embed", json.dumps({"inputs": ["hello there"]}).encode())
    assert status == 200
    expected = encoderforge.load(minilm_artifact.path, device="cpu").encode(["hello there"], normalize=True)
    np.testing.assert_allclose(np.array(vectors), expected, atol=1e-5)
    status, answer, _ = request(server, "/predict", json.dumps({"model": "cls", "inputs": "A fine day."}).encode())
    assert status == 200
    assert _same(answer, encoderforge.load(artifact(*TINY["cls"]).path, device="cpu")(["A fine day."])[0])
    status, text, _ = request(server, "/predict", json.dumps({"inputs": "A fine day."}).encode())
    assert status == 400 and "ner, cls" in json.loads(text)["error"]  # two classifiers: name one
    status, answers, _ = request(server, "/predict", json.dumps({"model": "ner", "inputs": ["Ada in Paris."]}).encode())
    assert status == 200 and isinstance(answers, list) and len(answers) == 1


BAD = [
    ("/v2/models/cls/infer", b"{not json", 400),
    ("/v2/models/cls/infer", b"\xff\xfe", 400),
    ("/v2/models/cls/infer", b'{"input": []}', 400),
    ("/v2/models/cls/infer", v2("hello", name="txt"), 400),
    ("/v2/models/cls/infer", b'{"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [1]}]}', 400),
    ("/v2/models/cls/infer", b'{"inputs": [{"name": "text", "shape": [3, 1], "datatype": "BYTES", "data": ["a"]}]}',
     400),
    ("/v2/models/cls/infer", v2(""), 400),
    ("/v2/models/cls/infer", v2("x" * 200_000), 400),
    ("/v2/models/mlm/infer", v2("a text without the mask token"), 400),
    ("/v2/models/nope/infer", v2("hello"), 404),
    ("/v1/embeddings", b'{"model": "minilm"}', 400),
    ("/embed", b'{"inputs": []}', 400),
    ("/predict", b'{"inputs": [1, 2]}', 400),
    ("/predict", b'{"model": "minilm", "inputs": "x"}', 404),
]


@pytest.mark.parametrize(("path", "body", "status"), BAD)
def test_every_bad_request_is_a_4xx_with_one_line(server: Any, path: str, body: bytes, status: int) -> None:
    got, text, _ = request(server, path, body)
    assert got == status, text
    message = json.loads(text)["error"]
    message = message["message"] if isinstance(message, dict) else message  # OpenAI's shape on /v1/embeddings
    assert "\n" not in message and "Traceback" not in message, message
    assert not re.search(r"(^|[\s'\"(])/(tmp|home|work|usr|root|opt)\b|site-packages|\.py\b", message), message


def test_a_question_no_window_can_hold_is_a_4xx(server: Any) -> None:
    question = " ".join(["why"] * 2000)
    body = json.dumps({"inputs": [{"name": "question", "shape": [1], "datatype": "BYTES", "data": [question]},
                                  {"name": "context", "shape": [1], "datatype": "BYTES", "data": ["Ada."]}]})
    status, text, _ = request(server, "/v2/models/qa/infer", body.encode())
    assert 400 <= status < 500 and "Traceback" not in text, text


def test_one_bad_row_of_a_batch_fails_alone(server: Any) -> None:
    texts = [f"The cat <mask> on mat number {i}." if i % 4 else "no mask here" for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda t: request(server, "/v2/models/mlm/infer", v2(t)), texts))
    for text, (status, answer, _) in zip(texts, results):
        if "<mask>" in text:
            assert status == 200 and len(json.loads(answer["outputs"][0]["data"][0])) >= 1
        else:
            assert status == 400 and "mask" in json.loads(answer)["error"]


def test_two_replicas_both_answer(server: Any) -> None:
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: request(server, "/v2/models/cls/infer", v2(f"text {i}")), range(64)))
    assert all(status == 200 for status, _, _ in results)
    assert len({headers["x-encoderforge-replica"] for _, _, headers in results}) == 2


def test_graceful_stop_answers_requests_in_flight(server: Any) -> None:
    """Last test of the module: stop the server while 16 requests are in flight; every one is answered."""
    with ThreadPoolExecutor(16) as pool:
        pending = [pool.submit(request, server, "/v2/models/minilm/infer", v2(f"sentence {i} " * 20))
                   for i in range(16)]
        time.sleep(0.2)
        threading.Thread(target=server.stop).start()
        assert [f.result()[0] for f in pending] == [200] * 16


def test_stop_returns_only_once_the_server_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second stop() (the `with start(...)` exit after a stop from another thread) waits for the first one:
    returning early let the caller use Ray while the other thread was still shutting it down."""
    serve = pytest.importorskip("ray.serve", reason="needs the serve extra: pip install 'encoderforge[serve]'")
    import ray

    from encoderforge.serving.ray_serve import ServeConfig, Server

    order: list[str] = []
    deleting = threading.Event()

    def slow_delete(name: str, _blocking: bool = True) -> None:
        deleting.set()
        time.sleep(0.3)
        order.append("app deleted")

    monkeypatch.setattr(serve, "delete", slow_delete)
    monkeypatch.setattr(serve, "shutdown", lambda: order.append("serve down"))
    monkeypatch.setattr(ray, "shutdown", lambda: order.append("ray down"))
    server = Server(ServeConfig(artifacts=("m",)), [], started_ray=True)
    first = threading.Thread(target=server.stop)
    first.start()
    assert deleting.wait(30)
    server.stop()
    order.append("second stop returned")
    first.join(30)
    assert order == ["app deleted", "serve down", "ray down", "second stop returned"]


# ---- start-up faults: one line, fast, nothing left running ------------------------------------------------


def _serve(*args: str) -> tuple[int, str, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "encoderforge.cli", "serve", *args], check=False,
                          capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    return done.returncode, done.stderr.strip(), time.monotonic() - start


def test_port_in_use_is_one_line_within_5_s(artifact: Callable[..., Any]) -> None:
    path = artifact(*TINY["cls"]).path
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        code, err, seconds = _serve(str(path), "--http-port", str(holder.getsockname()[1]))
    assert code == 2 and err.startswith("error: cannot listen on 127.0.0.1") and "\n" not in err, err
    assert seconds < 5, seconds


def test_other_startup_faults_are_one_line(artifact: Callable[..., Any], tmp_path: Path) -> None:
    path = str(artifact(*TINY["cls"]).path)
    code, err, _ = _serve(path, "--http-port", "70000")
    assert code == 2 and "70000 is not a TCP port" in err
    code, err, seconds = _serve(str(tmp_path / "missing"), "--http-port", str(free_port()))
    assert code == 2 and err.startswith("error:") and "\n" not in err and seconds < 5, err
    code, err, seconds = _serve(path, "--device", "cuda", "--http-port", str(free_port()))
    assert code == 2 and "not usable here" in err and "\n" not in err and seconds < 5, err

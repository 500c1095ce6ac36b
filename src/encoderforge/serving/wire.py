"""The HTTP wire formats `serve` speaks, as pure functions: request bodies in, checked rows out; answers in,
response bodies out. No server code here, so every rule is unit-tested without one.

- KServe v2 (what Triton's HTTP clients send): JSON tensors, and the binary tensor extension that `tritonclient`
  uses by default (`Inference-Header-Content-Length`; BYTES elements as a 4-byte little-endian length + bytes).
- OpenAI `POST /v1/embeddings` (float or base64 vectors), TEI `POST /embed`, and `POST /predict`.

A bad request raises `ClientError` (an InputError with the HTTP status): one line naming the bad value and the fix.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoderforge.errors import InputError
from encoderforge.serving.tasks import Rows, TaskIO, decode_text, to_json_bytes

Answer = dict[str, np.ndarray]  # one row's outputs, as serving/tasks.py runs them


class ClientError(InputError):
    """A request the server cannot answer as sent; `status` is its HTTP status (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class V2Request:
    rows: Rows
    count: int
    request_id: str | None


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ClientError(f"request body is not valid JSON ({str(exc).splitlines()[0][:80]}); send a JSON object")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _text(value: Any, where: str, max_bytes: int) -> str:
    try:
        return decode_text(value, where, max_bytes=max_bytes)
    except InputError as exc:
        raise ClientError(str(exc)) from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item))
    return out


def _binary_bytes(chunk: bytes, where: str) -> list[bytes]:
    """BYTES elements of the binary extension: each a uint32 little-endian length, then that many bytes."""
    items, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise ClientError(f"{where}: binary BYTES data ends inside an element length; resend the tensor")
        (size,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + size > len(chunk):
            raise ClientError(f"{where}: binary element of {size} bytes runs past binary_data_size; resend it")
        items.append(chunk[offset:offset + size])
        offset += size
    return items


def parse_v2(body: bytes, header_length: str | None, io: TaskIO, *, max_text_bytes: int) -> V2Request:
    """An `/v2/models/{name}/infer` body as rows for the model's inputs (one text per row)."""
    binary = b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ClientError(f"Inference-Header-Content-Length {header_length!r:.40} is not an integer") from None
        if not 0 < size <= len(body):
            raise ClientError(f"Inference-Header-Content-Length {size} is outside the body's {len(body)} bytes")
        body, binary = body[:size], body[size:]
    request = _object(parse_json(body), "request body")
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ClientError(f"request has no `inputs` list; send {{\"inputs\": [{{\"name\": \"{io.inputs[0]}\", "
                          "\"shape\": [1, 1], \"datatype\": \"BYTES\", \"data\": [\"...\"]}]}")
    rows: Rows = {}
    offset = 0
    for index, raw in enumerate(tensors):
        tensor = _object(raw, f"inputs[{index}]")
        name = tensor.get("name")
        if name not in io.inputs:
            raise ClientError(f"input {name!r:.60} is not an input of this model; it takes {list(io.inputs)}")
        if name in rows:
            raise ClientError(f"input {name!r} is given twice; send each input once")
        if tensor.get("datatype") != "BYTES":
            raise ClientError(f"input {name!r} has datatype {tensor.get('datatype')!r:.20}; send BYTES (UTF-8 text)")
        shape = tensor.get("shape")
        if (not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape)
                or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1)):
            raise ClientError(f"input {name!r} has shape {shape!r:.40}; send [rows] or [rows, 1]")
        parameters = tensor.get("parameters") or {}
        if "binary_data_size" in parameters:
            size = parameters["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ClientError(f"input {name!r}: binary_data_size {size!r:.20} does not fit the binary body")
            values: list[Any] = list(_binary_bytes(binary[offset:offset + size], f"input {name!r}"))
            offset += size
        elif "data" in tensor:
            values = _flatten(tensor["data"])
        else:
            raise ClientError(f"input {name!r} has no `data`; send its texts as a list of strings")
        if len(values) != shape[0]:
            raise ClientError(f"input {name!r} has shape {shape} but {len(values)} values; make them agree")
        if not all(isinstance(v, (str, bytes)) for v in values):
            raise ClientError(f"input {name!r} holds non-text values; send strings")
        rows[name] = [_text(v, f"{name}[{i}]", max_text_bytes) for i, v in enumerate(values)]
    missing = [n for n in io.inputs if n not in rows]
    if missing:
        raise ClientError(f"missing input {missing[0]!r}; this model takes {list(io.inputs)}")
    counts = {len(v) for v in rows.values()}
    if len(counts) != 1 or 0 in counts:
        raise ClientError(f"inputs {list(io.inputs)} must hold the same number of rows, at least one")
    request_id = request.get("id")
    return V2Request(rows, counts.pop(), str(request_id) if request_id is not None else None)


def v2_response(model: str, io: TaskIO, answers: Sequence[Answer], request_id: str | None) -> dict[str, Any]:
    outputs = []
    for spec in io.outputs:
        stacked = np.stack([a[spec.name] for a in answers])
        if spec.dtype == "BYTES":
            data: list[Any] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in stacked.reshape(-1)]
        else:
            data = stacked.reshape(-1).tolist()
        outputs.append({"name": spec.name, "datatype": spec.dtype, "shape": list(stacked.shape), "data": data})
    response: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": outputs}
    if request_id is not None:
        response["id"] = request_id
    return response


def v2_metadata(model: str, io: TaskIO) -> dict[str, Any]:
    return {"name": model, "versions": ["1"], "platform": "encoderforge",
            "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1, 1]} for n in io.inputs],
            "outputs": [{"name": s.name, "datatype": s.dtype, "shape": [-1, *s.shape]} for s in io.outputs]}


def _texts(value: Any, field: str, *, max_text_bytes: int) -> tuple[list[str], bool]:
    """(texts, single) from a str or a non-empty list of str."""
    single = isinstance(value, str)
    items = [value] if single else value
    if not isinstance(items, list) or not items:
        raise ClientError(f"`{field}` must be a string or a non-empty list of strings, got {type(value).__name__}")
    if not all(isinstance(t, str) for t in items):
        raise ClientError(f"`{field}` holds a non-string item (token arrays are not supported); send strings")
    return [_text(t, f"{field}[{i}]", max_text_bytes) for i, t in enumerate(items)], single


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str | None
    texts: list[str]
    single: bool
    base64: bool = False
    normalize: bool | None = None


def parse_openai(body: bytes, *, max_text_bytes: int) -> EmbeddingsRequest:
    request = _object(parse_json(body), "request body")
    if "input" not in request:
        raise ClientError("request has no `input`; send {\"model\": \"<name>\", \"input\": [\"text\", ...]}")
    encoding = request.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ClientError(f"encoding_format {encoding!r:.20} is not supported; use float or base64")
    if request.get("dimensions") is not None:
        raise ClientError("`dimensions` is not supported: this model's vectors have one size; drop the field")
    model = request.get("model")
    texts, single = _texts(request["input"], "input", max_text_bytes=max_text_bytes)
    return EmbeddingsRequest(model if isinstance(model, str) else None, texts, single, encoding == "base64")


def openai_response(model: str, vectors: np.ndarray, *, as_base64: bool) -> dict[str, Any]:
    data = []
    for index, vector in enumerate(vectors):
        value: Any = (base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii") if as_base64
                      else vector.tolist())
        data.append({"object": "embedding", "index": index, "embedding": value})
    # Token counts are not computed (it would tokenize twice); the field is there for clients that read it.
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}


def parse_tei(body: bytes, *, max_text_bytes: int) -> EmbeddingsRequest:
    request = _object(parse_json(body), "request body")
    if "inputs" not in request:
        raise ClientError("request has no `inputs`; send {\"inputs\": [\"text\", ...]}")
    normalize = request.get("normalize", True)
    if not isinstance(normalize, bool):
        raise ClientError(f"`normalize` must be true or false, got {normalize!r:.20}")
    model = request.get("model")
    texts, single = _texts(request["inputs"], "inputs", max_text_bytes=max_text_bytes)
    return EmbeddingsRequest(model if isinstance(model, str) else None, texts, single, normalize=normalize)


@dataclass(frozen=True)
class PredictRequest:
    model: str | None
    texts: list[str]
    single: bool


def parse_predict(body: bytes, *, max_text_bytes: int) -> PredictRequest:
    request = _object(parse_json(body), "request body")
    if "inputs" not in request:
        raise ClientError("request has no `inputs`; send {\"inputs\": \"text\"} or {\"inputs\": [\"text\", ...]}")
    model = request.get("model")
    texts, single = _texts(request["inputs"], "inputs", max_text_bytes=max_text_bytes)
    return PredictRequest(model if isinstance(model, str) else None, texts, single)


def results_json(answers: Sequence[Answer], *, single: bool) -> bytes:
    """The pipeline's JSON results (already serialized per row) spliced into one document."""
    parts = [bytes(a["result"].reshape(-1)[0]) for a in answers]
    return parts[0] if single else b"[" + b",".join(parts) + b"]"


def error_body(message: str, *, openai: bool = False, status: int = 400) -> bytes:
    """Triton's error shape, which tritonclient reads: {"error": "..."} (one line); OpenAI's for its route."""
    line = " ".join(message.split())
    if openai:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return to_json_bytes({"error": {"message": line, "type": kind, "param": None, "code": None}})
    return to_json_bytes({"error": line})

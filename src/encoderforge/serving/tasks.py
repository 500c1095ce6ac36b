"""What a served task looks like on the wire: its text inputs, its output tensors, and how a batch of rows
runs through the task's pipeline.

Every input is a BYTES tensor holding one UTF-8 text per row. Outputs are JSON-friendly: embeddings as an FP32
vector per row (`embedding`), every other task as one JSON document per row (`result`, BYTES), the same value
the pipeline returns in Python. Shared by `serve` (Ray Serve), the Python-backend Triton repository and `batch`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoderforge.errors import EncoderForgeError, InputError, UnsupportedError
from encoderforge.runtime.requests import json_default

DEFAULT_MAX_TEXT_BYTES = 200_000


class ServingError(EncoderForgeError):
    """Serving or batch jobs cannot start or run: missing extra, libpython, port, bad corpus or job setting."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton data type: BYTES, FP32
    shape: tuple[int, ...]  # per row, without the batch axis; -1 is dynamic


Rows = dict[str, list[str]]  # input name -> one text per row
Runner = Callable[[Any, Rows], list[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class TaskIO:
    task: str
    inputs: tuple[str, ...]
    outputs: tuple[TensorSpec, ...]
    run: Runner  # (pipeline, rows) -> one dict of output arrays per row, in row order


def to_json_bytes(value: Any) -> bytes:
    """JSON for pipeline results (numpy scalars and arrays included)."""
    return json.dumps(value, default=json_default, ensure_ascii=False).encode("utf-8")


def _json_rows(results: Sequence[Any]) -> list[dict[str, np.ndarray]]:
    return [{"result": np.array([to_json_bytes(r)], dtype=object)} for r in results]


def _as_list(results: Any, count: int, *, unwraps_single: bool) -> list[Any]:
    """Pipelines unwrap a single result for some tasks; give back exactly one result per row."""
    if count == 1 and unwraps_single and not (isinstance(results, list) and len(results) == 1):
        return [results]
    if not isinstance(results, list) or len(results) != count:
        raise EncoderForgeError(f"pipeline returned {type(results).__name__} for {count} rows; expected a list")
    return results


def _run_embed(pipeline: Any, rows: Rows) -> list[dict[str, np.ndarray]]:
    vectors = np.asarray(pipeline.encode(rows["text"]), dtype=np.float32)
    return [{"embedding": vector} for vector in vectors]


def _run_text(pipeline: Any, rows: Rows) -> list[dict[str, np.ndarray]]:
    texts = rows["text"]
    return _json_rows(_as_list(pipeline(list(texts)), len(texts), unwraps_single=False))


def _run_fill_mask(pipeline: Any, rows: Rows) -> list[dict[str, np.ndarray]]:
    texts = rows["text"]
    results = pipeline(list(texts))
    # fill-mask answers a one-text list unwrapped (its top_k candidates), as transformers does
    return _json_rows([results] if len(texts) == 1 else _as_list(results, len(texts), unwraps_single=False))


def _run_qa(pipeline: Any, rows: Rows) -> list[dict[str, np.ndarray]]:
    questions, contexts = rows["question"], rows["context"]
    results = pipeline(question=list(questions), context=list(contexts))
    return _json_rows(_as_list(results, len(questions), unwraps_single=True))


_RESULT = (TensorSpec("result", "BYTES", (1,)),)
TASK_IO: dict[str, TaskIO] = {
    "feature-extraction": TaskIO("feature-extraction", ("text",), (TensorSpec("embedding", "FP32", (-1,)),),
                                 _run_embed),
    "text-classification": TaskIO("text-classification", ("text",), _RESULT, _run_text),
    "token-classification": TaskIO("token-classification", ("text",), _RESULT, _run_text),
    "fill-mask": TaskIO("fill-mask", ("text",), _RESULT, _run_fill_mask),
    "question-answering": TaskIO("question-answering", ("question", "context"), _RESULT, _run_qa),
}


def task_io(task: str) -> TaskIO:
    if task not in TASK_IO:
        raise UnsupportedError(
            f"task {task!r} cannot be served; servable tasks: {', '.join(sorted(TASK_IO))}"
        )
    return TASK_IO[task]


def decode_text(value: Any, where: str, *, max_bytes: int) -> str:
    """One wire value (bytes or str) as a checked text: UTF-8, not empty, at most `max_bytes` bytes."""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if len(raw) > max_bytes:
        raise InputError(f"{where} has {len(raw):,} bytes, more than the limit of {max_bytes:,}; "
                         "shorten it or raise --max-text-bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not valid UTF-8 ({exc.reason} at byte {exc.start}); send UTF-8 text") from exc
    if not text.strip():
        raise InputError(f"{where} is empty or whitespace only; send some text")
    return text


def run_rows(io: TaskIO, pipeline: Any, rows: Rows) -> list[dict[str, np.ndarray] | InputError]:
    """Run rows together; when the pipeline rejects the batch, run them one by one so that one bad row
    gets its own error and the others their answers."""
    count = len(rows[io.inputs[0]])
    if count == 0:
        return []
    try:
        return list(io.run(pipeline, rows))
    except InputError:
        if count == 1:
            raise
    answers: list[dict[str, np.ndarray] | InputError] = []
    for index in range(count):
        try:
            answers.extend(io.run(pipeline, {name: [values[index]] for name, values in rows.items()}))
        except InputError as exc:
            answers.append(exc)
    return answers

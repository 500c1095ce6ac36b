"""What a served task looks like on the wire: its text inputs, its output tensors, and how a batch of rows
runs through the task's pipeline.

Every input is a BYTES tensor holding one UTF-8 text per row. Outputs are JSON-friendly: embeddings as an FP32
vector per row (`embedding`), every other task as one JSON document per row (`result`, BYTES), the same value
the pipeline returns in Python. Shared by `serve` (Ray Serve), the Python-backend Triton repository and `batch`.
Which tasks are servable, their inputs and outputs all come from each pipeline's `TaskContract`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoderforge.errors import EncoderForgeError, InputError, UnsupportedError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import TaskContract
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


def _runner(contract: TaskContract) -> Runner:
    fields = contract.request_fields

    def run_embed(pipeline: Any, rows: Rows) -> list[dict[str, np.ndarray]]:
        vectors = np.asarray(pipeline.encode(rows[fields[0]]), dtype=np.float32)
        return [{"embedding": vector} for vector in vectors]

    def run_json(pipeline: Any, rows: Rows) -> list[dict[str, np.ndarray]]:
        count = len(rows[fields[0]])
        args, kwargs = contract.many(list(zip(*(rows[name] for name in fields))) if len(fields) > 1
                                     else rows[fields[0]])
        return _json_rows(_as_list(pipeline(*args, **kwargs), count, unwraps_single=contract.unwraps_single))

    return run_embed if contract.result == "embedding" else run_json


_OUTPUTS = {"embedding": (TensorSpec("embedding", "FP32", (-1,)),), "json": (TensorSpec("result", "BYTES", (1,)),)}
TASK_IO: dict[str, TaskIO] = {
    task: TaskIO(task, pipeline.contract.request_fields, _OUTPUTS[pipeline.contract.result],
                 _runner(pipeline.contract))
    for task, pipeline in PIPELINES.items() if pipeline.contract.served
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
    gets its own error and the others their answers (a rejected single row is its error, not a raise)."""
    count = len(rows[io.inputs[0]])
    if count == 0:
        return []
    try:
        return list(io.run(pipeline, rows))
    except InputError as exc:
        if count == 1:
            return [exc]
    answers: list[dict[str, np.ndarray] | InputError] = []
    for index in range(count):
        try:
            answers.extend(io.run(pipeline, {name: [values[index]] for name, values in rows.items()}))
        except InputError as exc:
            answers.append(exc)
    return answers

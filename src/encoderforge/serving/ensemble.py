"""The Python-backend models of a `triton-repo` ensemble: tokenize, model (Python variant) and postprocess.

Each model.py in the repository is one import of `TritonPythonModel` below; the model's config names its role.
Tokenize and postprocess drive the task's own pipeline, so the ensemble answers exactly like `serve`:

- tokenize runs the pipeline on one row with a *recording* session: the feed the pipeline asks for is the
  tokenization, padded to a length bucket (16, 32, 64, ...) so similar requests share a shape and batch;
- postprocess runs the pipeline with a *replaying* session that answers each feed row with the graph outputs
  the ensemble computed for the same token ids.

The classes below need only numpy and encoderforge; `TritonPythonModel` adds Triton's pb_utils.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.errors import EncoderForgeError, InputError
from encoderforge.runtime.backends import SessionBase, TensorInfo
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.serving.tasks import DEFAULT_MAX_TEXT_BYTES, decode_text, task_io

Arrays = dict[str, np.ndarray]


def bucket(length: int, limit: int) -> int:
    """The padded length for `length` tokens: the next of 16, 32, 64, ... capped at the model's max length."""
    size = 16
    while size < length:
        size *= 2
    return max(min(size, limit), length)


class _Session(SessionBase):
    backend = "triton-ensemble"

    def __init__(self, artifact: Artifact) -> None:
        self.manifest = artifact.manifest
        self._per_token = {s.name for s in self.manifest.outputs if s.per_token}

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(s.name, s.dtype, tuple(s.axes)) for s in self.manifest.inputs]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(s.name, s.dtype, tuple(s.axes)) for s in self.manifest.outputs]

    def run(self, feed: Arrays) -> Arrays:
        raise NotImplementedError


class RecordingSession(_Session):
    """Keeps the feeds it is asked to run and answers with zeros of the right shapes."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self.feeds: list[Arrays] = []

    def run(self, feed: Arrays) -> Arrays:
        self.feeds.append(feed)
        rows, length = feed["input_ids"].shape[:2]
        out = {}
        for spec in self.manifest.outputs:
            shape = [rows] + [length if a == "sequence" else (a if isinstance(a, int) else 1) for a in spec.axes[1:]]
            out[spec.name] = np.zeros(shape, dtype=np.float32)
        return out


class ReplaySession(_Session):
    """Answers feed rows with outputs recorded for the same (unpadded) token ids."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self.known: dict[tuple[int, ...], Arrays] = {}

    def remember(self, ids: np.ndarray, mask: np.ndarray, outputs: Arrays) -> None:
        n = int(mask.sum())
        self.known[tuple(int(i) for i in ids[:n])] = {
            name: value[:n] if name in self._per_token else value for name, value in outputs.items()}

    def run(self, feed: Arrays) -> Arrays:
        rows, length = feed["input_ids"].shape[:2]
        out: dict[str, list[np.ndarray]] = {}
        for row in range(rows):
            n = int(feed["attention_mask"][row].sum())
            key = tuple(int(i) for i in feed["input_ids"][row, :n])
            if key not in self.known:
                raise EncoderForgeError("postprocess got no graph output for a tokenized row; tokenize and "
                                        "postprocess must use the same artifact")
            for name, value in self.known[key].items():
                if name in self._per_token:
                    value = np.pad(value, [(0, length - len(value))] + [(0, 0)] * (value.ndim - 1))
                out.setdefault(name, []).append(value)
        return {name: np.stack(values) for name, values in out.items()}


def _texts(inputs: Arrays, names: tuple[str, ...], max_bytes: int) -> dict[str, list[str]]:
    return {name: [decode_text(v, f"{name}[{i}]", max_bytes=max_bytes)
                   for i, v in enumerate(np.asarray(inputs[name]).reshape(-1))] for name in names}


class Tokenize:
    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> None:
        self.artifact = Artifact.load(directory, verify=False)
        self.io = task_io(self.artifact.task)
        self.session = RecordingSession(self.artifact)
        self.pipeline = PIPELINES.get(self.artifact.task)(self.artifact, self.session)
        self.max_bytes = max_bytes
        self.inputs = self.io.inputs

    def __call__(self, inputs: Arrays) -> Arrays:
        texts = _texts(inputs, self.io.inputs, self.max_bytes)
        rows = []
        for index in range(len(texts[self.io.inputs[0]])):
            self.session.feeds.clear()
            self.io.run(self.pipeline, {name: [values[index]] for name, values in texts.items()})
            if len(self.session.feeds) != 1 or len(self.session.feeds[0]["input_ids"]) != 1:
                raise InputError(f"row {index} needs several windows (a long context); the ensemble runs one "
                                 "window per row: shorten it or use `encoderforge serve`")
            feed = self.session.feeds[0]
            n = int(feed["attention_mask"][0].sum())
            rows.append({name: value[0, :n] for name, value in feed.items()})
        length = bucket(max(len(r["input_ids"]) for r in rows), self.artifact.max_length)
        pad = {"input_ids": self.pipeline.tokenizer.pad_id}
        return {name: np.stack([np.pad(r[name], (0, length - len(r[name])), constant_values=pad.get(name, 0))
                                for r in rows]).astype(np.int64) for name in rows[0]}


class Model:
    def __init__(self, directory: Path) -> None:
        from encoderforge.runtime.backends import get_backend

        self.artifact = Artifact.load(directory, verify=False)
        self.session = get_backend("onnxruntime-cpu").load(self.artifact)
        self.inputs = tuple(self.artifact.input_names)

    def __call__(self, inputs: Arrays) -> Arrays:
        return self.session.run({name: np.asarray(inputs[name], dtype=np.int64) for name in self.inputs})


class Postprocess:
    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> None:
        self.artifact = Artifact.load(directory, verify=False)
        self.io = task_io(self.artifact.task)
        self.session = ReplaySession(self.artifact)
        self.pipeline = PIPELINES.get(self.artifact.task)(self.artifact, self.session)
        self.max_bytes = max_bytes
        self.inputs = (*self.io.inputs, "input_ids", "attention_mask", *self.artifact.output_names)

    def __call__(self, inputs: Arrays) -> Arrays:
        texts = _texts(inputs, self.io.inputs, self.max_bytes)
        self.session.known.clear()
        for row in range(len(inputs["input_ids"])):
            self.session.remember(inputs["input_ids"][row], inputs["attention_mask"][row],
                                  {name: np.asarray(inputs[name][row]) for name in self.artifact.output_names})
        answers = self.io.run(self.pipeline, texts)
        return {spec.name: np.stack([a[spec.name] for a in answers]) for spec in self.io.outputs}


ROLES = {"tokenize": Tokenize, "model": Model, "postprocess": Postprocess}


class TritonPythonModel:
    """Triton's Python-backend entry point; the role and artifact folder come from the model's parameters."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        directory = Path(args["model_repository"]) / args["model_version"] / params.get("artifact", "artifact")
        self.worker = ROLES[params["role"]](directory)
        self.outputs = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                inputs = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                          for name in self.worker.inputs}
                outputs = self.worker(inputs)
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(name, np.asarray(outputs[name]).astype(dtype))
                    for name, dtype in self.outputs.items()]))
            except InputError as exc:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)))
            except Exception as exc:  # noqa: BLE001 - one request's failure must not take the model down
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses

"""Models as the server holds them: checked before anything starts, then loaded with one shared session per
model, whose `run` admits a bounded number of concurrent calls.

Each model has `workers` pipelines (own tokenizer each: tokenizing is not shared state) over one session. An
onnxruntime CPU session runs `workers` calls at once, each with few intra-op threads (by default one): on a
machine whose cores are shared with the HTTP server, a multi-threaded onnxruntime call spin-waits for its
threads and stalls on the one descheduled (MiniLM, 64 clients, 2 cores: one 2-thread call at a time cost the
replica 11 ms of CPU per request, two 1-thread calls at once 8.4 ms). Other backends (CUDA, TensorRT,
OpenVINO) run one call at a time.
A batch is split into length buckets by its texts' token counts (`runtime.batching.padding_buckets`): on the
sentences of benchmarks/serving_load.py, the former fixed buckets of 8 by character length made the model
compute 1.7x the padded tokens of the in-process runtime's sort over the whole input (the replica: 8.4 -> 6.0 ms).
"""

from __future__ import annotations

import queue
import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.errors import EncoderForgeError, InputError
from encoderforge.runtime.backends import Session, TensorInfo
from encoderforge.runtime.batching import padding_buckets
from encoderforge.serving.tasks import Rows, ServingError, TaskIO, run_rows, task_io

# A short text per input for the warm-up that readiness waits for (fill-mask gets its mask token added).
_WARMUP = {"text": "Hello world.", "question": "Who?", "context": "Ada wrote it."}


@dataclass(frozen=True)
class ModelSpec:
    """One artifact to serve, checked: its name on the wire, its directory, task and backend."""

    name: str
    path: Path
    task: str
    backend: str


def model_name(spec: str, used: set[str]) -> tuple[str, Path]:
    """NAME=PATH or PATH (named from the directory, cleaned to [A-Za-z0-9._-])."""
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    directory = Path(path).expanduser()
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", directory.resolve().name).strip("-.") or "model"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ServingError(f"model name {name!r} may hold only letters, digits, '.', '_' and '-'")
    if name in used:
        raise ServingError(f"two artifacts are both named {name!r}; name them apart with NAME=PATH")
    used.add(name)
    return name, directory


def check_models(artifacts: tuple[str, ...], *, device: str) -> list[ModelSpec]:
    """Every artifact readable, servable and its backend installed: fails in well under a second."""
    from encoderforge.artifact import Artifact
    from encoderforge.runtime import choose_backend
    from encoderforge.runtime.backends import get_backend

    if not artifacts:
        raise ServingError("no artifact to serve; pass one or more artifact directories")
    used: set[str] = set()
    specs = []
    for spec in artifacts:
        name, path = model_name(spec, used)
        artifact = Artifact.load(path, verify=False)
        task_io(artifact.task)
        backend = choose_backend(device, None, artifact)  # type: ignore[arg-type]
        reason = get_backend(backend).available()
        if reason is not None:
            raise ServingError(f"{name}: backend {backend} is not usable here ({reason}); install it or pick "
                               "another --device")
        specs.append(ModelSpec(name, path, artifact.task, backend))
    return specs


def check_port(host: str, port: int) -> None:
    """The HTTP port is valid and free (bound by nothing: another server, ours or not)."""
    if not 1 <= port <= 65535:
        raise ServingError(f"--http-port {port} is not a TCP port; pick one in 1-65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServingError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); stop what holds it or pass "
                               "another --http-port") from None


class LockedSession:
    """A session whose `run` admits at most `concurrent` calls at once (1: the one critical section that
    the pipelines of a model share)."""

    def __init__(self, session: Session, concurrent: int = 1) -> None:
        self._session = session
        self._lock = threading.BoundedSemaphore(max(1, concurrent))
        self.backend = session.backend
        self.parallel_calls = 1  # the server's concurrency is its pipelines (workers), one call each

    def inputs(self) -> list[TensorInfo]:
        return self._session.inputs()

    def outputs(self) -> list[TensorInfo]:
        return self._session.outputs()

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            return self._session.run(feed)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> LockedSession:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def row_lengths(pipeline: Any, rows: Rows, names: Sequence[str]) -> list[int]:
    """Each row's token count (all its inputs), with the pipeline's own tokenizer; the texts' lengths in
    characters for a pipeline without one, or when tokenizing fails (the pipeline then says why)."""
    characters = [sum(len(rows[n][i]) for n in names) for i in range(len(rows[names[0]]))]
    tokenizer = getattr(getattr(pipeline, "tokenizer", None), "tokenizer", None)
    if tokenizer is None:
        return characters
    try:
        per_input = [[len(e.ids) for e in tokenizer.encode_batch_fast(rows[n], add_special_tokens=True)]
                     for n in names]
    except Exception:  # noqa: BLE001 - only an estimate; the pipeline reports a bad text itself
        return characters
    return [sum(column) for column in zip(*per_input)]


@dataclass
class ModelHost:
    """A loaded model: its wire description and a pool of pipelines over one locked session."""

    spec: ModelSpec
    io: TaskIO
    session: LockedSession
    pipelines: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    normalizes: bool = False
    bucket: int = 32  # most rows of one length bucket

    def run(self, rows: Rows) -> list[dict[str, np.ndarray] | InputError]:
        """One batch of rows (blocking; call from a worker thread): one answer or InputError per row.

        The rows are split into buckets of similar token counts (`padding_buckets`, at most `bucket` rows
        each), so that a long text pads only its neighbours in length."""
        names = self.io.inputs
        count = len(rows[names[0]])
        answers: list[dict[str, np.ndarray] | InputError | None] = [None] * count
        pipeline = self.pipelines.get()
        try:
            for bucket in padding_buckets(row_lengths(pipeline, rows, names), max_rows=self.bucket):
                part = run_rows(self.io, pipeline, {n: [rows[n][i] for i in bucket] for n in names})
                for index, answer in zip(bucket, part):
                    answers[index] = answer
        finally:
            self.pipelines.put(pipeline)
        return answers  # type: ignore[return-value]  # every index was filled

    def warm_up(self) -> None:
        """Answer one request through the whole path; readiness waits for this on every model."""
        pipeline = self.pipelines.get()
        try:
            mask = getattr(pipeline, "mask_token", None)
            rows = {n: [_WARMUP[n] + (f" {mask}" if mask and self.spec.task == "fill-mask" else "")]
                    for n in self.io.inputs}
            answers = run_rows(self.io, pipeline, rows)
        finally:
            self.pipelines.put(pipeline)
        if len(answers) != 1 or isinstance(answers[0], InputError):
            raise ServingError(f"{self.spec.name} did not answer its warm-up request: {answers[0]}")

    def close(self) -> None:
        self.session.close()


def load_host(spec: ModelSpec, *, threads: int, workers: int, bucket: int = 32,
              options: dict[str, Any] | None = None) -> ModelHost:
    from encoderforge.artifact import Artifact
    from encoderforge.runtime.backends import get_backend
    from encoderforge.runtime.pipelines import PIPELINES

    artifact = Artifact.load(spec.path, verify=True)
    try:
        session = get_backend(spec.backend).load(artifact, intra_op_threads=threads,
                                                  **(options or {}))
    except EncoderForgeError:
        raise
    except Exception as exc:  # a backend's own error, shown as one line
        raise ServingError(f"{spec.name}: {spec.backend} cannot load {artifact.model_path.name}: "
                           f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") from exc
    locked = LockedSession(session, concurrent=workers if get_backend(spec.backend).concurrent_calls
                           else min(workers, session.parallel_calls))
    host = ModelHost(spec, task_io(spec.task), locked, bucket=bucket)
    for _ in range(max(1, workers)):
        pipeline = PIPELINES.get(spec.task)(artifact, locked)
        host.normalizes = bool(getattr(pipeline, "normalize", False))
        host.pipelines.put(pipeline)
    host.warm_up()
    return host

"""`encoderforge serve`: artifacts served by NVIDIA Triton Inference Server through PyTriton.

    encoderforge serve out/roberta-qa out/minilm --http-port 8000 --max-batch 32 --max-queue-delay-ms 2

One Triton model per artifact, named from the artifact directory (or NAME=PATH). Text goes in as BYTES tensors,
the task's answer comes out as JSON-friendly tensors (see serving/tasks.py). Triton's dynamic batcher gathers
requests (up to --max-batch rows, waiting at most --max-queue-delay-ms); each gathered batch runs through the
pipeline, which sorts it into length buckets. Triton serves HTTP/REST and gRPC (KServe v2), Prometheus metrics,
/v2/health/live and /v2/health/ready. A request waiting in the queue past its deadline (the default
--request-timeout-ms, or the request's own `timeout` parameter in microseconds) is rejected with a timeout.
SIGINT / SIGTERM stop the server gracefully (in-flight requests finish, up to --shutdown-timeout-s).

A bad request (empty text, text over --max-text-bytes, not UTF-8) fails alone with 400 and a message; the other
requests of its batch are answered. What PyTriton itself needs from this interpreter (libpython, numpy<2 for
its stubs, per-request errors) is in serving/pytriton_env.py.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.errors import EncoderForgeError, InputError
from encoderforge.serving.pytriton_env import (
    ERROR_KEY,
    install_request_errors,
    libpython_dir,
    prepare_environment,
    require_pytriton,
    stub_environment,
    use_stub_environment,
)
from encoderforge.serving.tasks import (
    DEFAULT_MAX_TEXT_BYTES,
    ServingError,
    TaskIO,
    decode_text,
    run_rows,
    task_io,
)

__all__ = ["ERROR_KEY", "ServeConfig", "Server", "libpython_dir", "make_infer", "model_name",
           "prepare_environment", "serve", "start"]

log = logging.getLogger(__name__)

_DTYPES = {"BYTES": bytes, "FP32": np.float32}


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """What `encoderforge serve` runs. Addresses default to loopback; None means Triton's default."""

    artifacts: tuple[str, ...]  # PATH or NAME=PATH
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 32
    max_queue_delay_ms: float = 2.0
    request_timeout_ms: int = 30_000  # queue deadline; 0: none
    max_queue_size: int = 0  # 0: unbounded
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    instances: int = 1
    device: str = "cpu"
    threads: int | None = None  # onnxruntime intra-op threads per instance
    shutdown_timeout_s: int = 30
    log_verbose: int = 0
    pipeline_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServedModel:
    name: str
    path: Path
    task: str
    io: TaskIO


def model_name(spec: str, used: set[str]) -> tuple[str, Path]:
    """NAME=PATH or PATH (named from the directory, cleaned to Triton's [A-Za-z0-9._-])."""
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    directory = Path(path).expanduser()
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", directory.resolve().name).strip("-.") or "model"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ServingError(f"model name {name!r} may hold only letters, digits, '.', '_' and '-'")
    if name in used:
        raise ServingError(f"two artifacts are both named {name!r}; name them apart with NAME=PATH")
    used.add(name)
    return name, directory


def make_infer(io: TaskIO, pipeline: Any, *, max_text_bytes: int) -> Any:
    """A PyTriton callable over a list of requests: bad requests get their own error, the rest are run together."""

    def infer(requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        rows: dict[str, list[str]] = {name: [] for name in io.inputs}
        spans: list[tuple[int, int] | str] = []
        for request in requests:
            try:
                columns = [np.asarray(request[name]).reshape(-1) for name in io.inputs]
                if len({len(c) for c in columns}) != 1:
                    raise InputError(f"inputs {list(io.inputs)} must have the same number of rows")
                texts = [[decode_text(v, f"{name}[{i}]", max_bytes=max_text_bytes) for i, v in enumerate(c)]
                         for name, c in zip(io.inputs, columns)]
            except KeyError as exc:
                spans.append(f"missing input {exc}; this model takes {list(io.inputs)}")
                continue
            except InputError as exc:
                spans.append(str(exc))
                continue
            start = len(rows[io.inputs[0]])
            for name, values in zip(io.inputs, texts):
                rows[name].extend(values)
            spans.append((start, start + len(texts[0])))
        answers = run_rows(io, pipeline, rows)
        responses: list[dict[str, np.ndarray]] = []
        for span in spans:
            if isinstance(span, str):
                responses.append(_error(span))
                continue
            part = answers[span[0]:span[1]]
            bad = next((a for a in part if isinstance(a, InputError)), None)
            if bad is not None:
                responses.append(_error(str(bad)))
                continue
            responses.append({spec.name: np.stack([a[spec.name] for a in part])  # type: ignore[index]
                              for spec in io.outputs})
        return responses

    return infer


def _error(message: str) -> dict[str, np.ndarray]:
    return {ERROR_KEY: np.array([message.encode("utf-8")], dtype=object)}


class Server:
    """A running Triton with our models (see `start`, which stops it on exit)."""

    def __init__(self, triton: Any, config: ServeConfig, models: list[ServedModel], pipelines: list[Any]) -> None:
        self.triton = triton
        self.config = config
        self.models = models
        self._pipelines = pipelines
        self._stopped = threading.Event()

    @property
    def http_url(self) -> str:
        return f"{self.config.host}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.host}:{self.config.metrics_port}/metrics"

    def wait(self) -> None:
        """Block until SIGINT / SIGTERM (or `stop()` from another thread), then shut down gracefully."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, lambda *_: self._stopped.set())
        try:
            while not self._stopped.wait(1.0):
                if not self.triton.is_alive():
                    raise ServingError("Triton Inference Server exited; run with -v to see its log")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        for pipeline in self._pipelines:
            close = getattr(pipeline, "close", None)
            if close is not None:
                close()
        self._pipelines = []


def _load_models(config: ServeConfig) -> tuple[list[ServedModel], list[list[Any]]]:
    from encoderforge.artifact import Artifact
    from encoderforge.runtime import load

    used: set[str] = set()
    models, pipelines = [], []
    options = dict(config.pipeline_options)
    if config.threads is not None:
        options["intra_op_threads"] = config.threads
    for spec in config.artifacts:
        name, path = model_name(spec, used)
        artifact = Artifact.load(path, verify=False)
        io = task_io(artifact.task)
        models.append(ServedModel(name, path, artifact.task, io))
        pipelines.append([load(path, device=config.device, **options)  # type: ignore[arg-type]
                          for _ in range(config.instances)])
    return models, pipelines


def _model_config(config: ServeConfig) -> Any:
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, TimeoutAction

    policy = QueuePolicy(timeout_action=TimeoutAction.REJECT,
                         default_timeout_microseconds=config.request_timeout_ms * 1000,
                         allow_timeout_override=True, max_queue_size=config.max_queue_size)
    batcher = DynamicBatcher(max_queue_delay_microseconds=int(config.max_queue_delay_ms * 1000),
                             default_queue_policy=policy)
    return ModelConfig(max_batch_size=config.max_batch, batcher=batcher)


@contextmanager
def start(config: ServeConfig) -> Iterator[Server]:
    """Load every artifact, start Triton and bind one model per artifact; yields once all models are ready."""
    require_pytriton()
    if not config.artifacts:
        raise ServingError("no artifact to serve; pass one or more artifact directories")
    if config.max_batch < 1 or config.instances < 1:
        raise ServingError(f"--max-batch ({config.max_batch}) and --instances ({config.instances}) must be >= 1")
    prepare_environment()
    install_request_errors()
    use_stub_environment(stub_environment())
    from pytriton.model_config import Tensor
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    models, pipelines = _load_models(config)
    triton_config = TritonConfig(
        http_address=config.host, http_port=config.http_port, grpc_address=config.host, grpc_port=config.grpc_port,
        metrics_address=config.host, metrics_port=config.metrics_port, allow_metrics=True,
        exit_timeout_secs=config.shutdown_timeout_s, log_verbose=config.log_verbose or None,
    )
    # Management endpoints stay behind PyTriton's access token; statistics (read-only) are open to operators.
    restricted = [e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"]
    triton = Triton(config=triton_config, security_config=TritonSecurityConfig(restricted_endpoints=restricted))
    server = Server(triton, config, models, [p for group in pipelines for p in group])
    try:
        for model, group in zip(models, pipelines):
            triton.bind(
                model_name=model.name,
                infer_func=[make_infer(model.io, p, max_text_bytes=config.max_text_bytes) for p in group],
                inputs=[Tensor(name=name, dtype=bytes, shape=(1,)) for name in model.io.inputs],
                outputs=[Tensor(name=spec.name, dtype=_DTYPES[spec.dtype], shape=spec.shape)
                         for spec in model.io.outputs],
                config=_model_config(config),
                strict=False,
            )
        try:
            triton.run()
        except EncoderForgeError:
            raise
        except Exception as exc:  # PyTriton raises its own error types, with the server log in the message
            raise ServingError(f"Triton did not start: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                               f"check that ports {config.http_port}, {config.grpc_port} and "
                               f"{config.metrics_port} are free, and run with -v for Triton's log") from exc
        log.info("serving %s on http://%s", ", ".join(m.name for m in models), server.http_url)
        yield server
    finally:
        server.stop()


def serve(config: ServeConfig) -> None:
    """Run until SIGINT / SIGTERM."""
    with start(config) as server:
        for model in server.models:
            inputs = ", ".join(model.io.inputs)
            print(f"{model.name} ({model.task}): POST http://{server.http_url}/v2/models/{model.name}/infer "
                  f"[{inputs}]", flush=True)
        print(f"gRPC {server.grpc_url}; metrics {server.metrics_url}; health http://{server.http_url}/v2/health/ready",
              flush=True)
        server.wait()

"""OpenVINO backend (CPU): the artifact's standard-op ONNX graph compiled with explicit threads, streams and
inference precision. Imports neither torch nor transformers (extra `[openvino]`).

    model.onnx (+ model.onnx.data) ──read_model──► ov.Model ──compile_model("CPU", threads, streams,
        precision)──► `streams` InferRequests per compiled model: up to that many run() calls at once

`streams` > 1 (OpenVINO's throughput mode) splits the threads between streams: each call is slower, but
`parallel_calls` of them run together (the pipelines' forward() and the server use that), which serves
many batches faster than one stream with all the threads.

Precision: `auto` is bf16 where the CPU has AMX-BF16 or AVX512-BF16 (read from /proc/cpuinfo's flags by
`cpu_precision`, which tests feed fake flags), f32 elsewhere; a QDQ graph runs its quantized ops in int8
whatever the hint (OpenVINO turns Q/DQ pairs into its own int8 kernels), the rest at the hint's precision.
With `static_sequences`, a request is padded to the smallest listed length >= its own and runs on a model
compiled for that fixed sequence length (compiled on first use); longer requests run on the dynamic model.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import onnx
from typing_extensions import Self

from encoderforge.artifact import Artifact
from encoderforge.cpu import BF16_FLAGS, current_cpu
from encoderforge.errors import EncoderForgeError, InputError, UnsupportedError
from encoderforge.runtime.backends import BACKENDS, TensorInfo
from encoderforge.runtime.backends.base import graph_file, refuse_unknown
from encoderforge.runtime.backends.compat import graph_ops, refusal
from encoderforge.runtime.backends.padding import bucket_for, feed_shape, pad_feed, trim
from encoderforge.runtime.backends.saturation import saturation_refusal

log = logging.getLogger(__name__)

Precision = Literal["auto", "f32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "f32", "bf16")
def cpu_precision(flags: Iterable[str] | None = None) -> Literal["f32", "bf16"]:
    """bf16 where the CPU computes it natively (AMX-BF16 or AVX512-BF16), f32 otherwise."""
    present = current_cpu().flags if flags is None else frozenset(flags)
    return "bf16" if present & BF16_FLAGS else "f32"


@dataclass(frozen=True, kw_only=True)
class OpenVinoOptions:
    """Compile settings; None means OpenVINO's default. `intra_op_threads` is named as in onnxruntime."""

    intra_op_threads: int | None = None
    streams: int = 1
    precision: Precision = "auto"
    static_sequences: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UnsupportedError(f"unknown openvino precision {self.precision!r}; choose one of {list(PRECISIONS)}")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise UnsupportedError(f"intra_op_threads must be >= 1 (or None for OpenVINO's default), "
                                   f"got {self.intra_op_threads}")
        if self.streams < 1:
            raise UnsupportedError(f"streams must be >= 1, got {self.streams}")
        buckets = self.static_sequences
        if any(int(b) < 1 for b in buckets) or list(buckets) != sorted(set(buckets)):
            raise UnsupportedError(f"static_sequences {buckets!r} must be increasing positive lengths, "
                                   "e.g. (64, 128, 256)")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> Self:
        refuse_unknown("openvino", options, tuple(f.name for f in fields(cls)))
        if "static_sequences" in options:
            options = {**options, "static_sequences": tuple(options["static_sequences"])}
        return cls(**options)

    def resolved_precision(self, flags: Iterable[str] | None = None) -> Literal["f32", "bf16"]:
        if self.precision == "auto":
            return cpu_precision(flags)
        if self.precision == "bf16" and cpu_precision(flags) != "bf16":
            log.warning("openvino bf16 requested on a CPU without AMX-BF16 / AVX512-BF16: it will be emulated "
                        "and slow; use precision='auto' or 'f32' here")
        return self.precision

    def config(self, flags: Iterable[str] | None = None) -> dict[str, str]:
        import openvino.properties as props
        import openvino.properties.hint as hints

        config = {
            hints.inference_precision: "bf16" if self.resolved_precision(flags) == "bf16" else "f32",
            props.num_streams: str(self.streams),
            hints.performance_mode: "LATENCY" if self.streams == 1 else "THROUGHPUT",
        }
        if self.intra_op_threads is not None:
            config[props.inference_num_threads] = str(self.intra_op_threads)
        return config


def _element_dtype(port: Any) -> np.dtype[Any]:
    dtype: np.dtype[Any] = np.dtype(port.get_element_type().to_dtype())
    return dtype


def _shape(port: Any) -> tuple[int | str | None, ...]:
    return tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())


def port_info(port: Any) -> TensorInfo:
    """An OpenVINO model's input or output port as a runtime TensorInfo."""
    return TensorInfo(port.get_any_name(), _element_dtype(port).name, _shape(port))


class OpenVinoSession:
    backend = "openvino"

    def __init__(self, core: Any, model: Any, options: OpenVinoOptions, *, precision: str,
                 output_axes: dict[str, Sequence[str | int | None]] | None = None, source: str = "graph") -> None:
        self._core = core
        self._model = model
        self._options = options
        self._config = options.config()
        self.precision = precision
        self._source = source
        self._output_axes = output_axes
        self._inputs = [p.get_any_name() for p in model.inputs]
        self._outputs = [p.get_any_name() for p in model.outputs]
        self._dtypes = {name: _element_dtype(p) for name, p in zip(self._inputs, model.inputs)}
        self.parallel_calls = options.streams  # run() calls that proceed at once
        # compiled model (None: dynamic shapes, else a static sequence length) -> its idle infer requests
        self._requests: dict[int | None, queue.SimpleQueue[Any]] = {None: self._compile(model)}
        self._lock = threading.Lock()  # guards _requests (compiling a bucket, closing)

    def _compile(self, model: Any) -> queue.SimpleQueue[Any]:
        try:
            compiled = self._core.compile_model(model, "CPU", self._config)
        except RuntimeError as exc:
            raise EncoderForgeError(f"openvino cannot compile {self._source}: {str(exc).strip().splitlines()[0]}") from exc
        idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(self.parallel_calls):
            idle.put(compiled.create_infer_request())
        return idle

    def _static(self, sequence: int) -> queue.SimpleQueue[Any]:
        """The requests of a model compiled for this fixed sequence length (dynamic batch); call under the lock."""
        if sequence not in self._requests:
            model = self._model.clone()
            model.reshape({p.get_any_name(): [-1, *[-1] * (len(p.get_partial_shape()) - 2), sequence]
                           for p in model.inputs})
            self._requests[sequence] = self._compile(model)
            log.info("compiled %s for sequence length %d", self._source, sequence)
        return self._requests[sequence]

    def compiled_sequences(self) -> list[int]:
        return sorted(s for s in self._requests if s is not None)

    def inputs(self) -> list[TensorInfo]:
        return [port_info(p) for p in self._model.inputs]

    def outputs(self) -> list[TensorInfo]:
        return [port_info(p) for p in self._model.outputs]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing, extra = set(self._inputs) - set(feed), set(feed) - set(self._inputs)
        if missing or extra:
            raise InputError(f"feed has {sorted(feed)}, the graph takes {self._inputs}; "
                             f"missing {sorted(missing)}, unknown {sorted(extra)}")
        arrays = {n: np.ascontiguousarray(feed[n], dtype=self._dtypes[n]) for n in self._inputs}
        bucket = None
        if self._options.static_sequences:
            batch, sequence = feed_shape(arrays)
            bucket = bucket_for(sequence, self._options.static_sequences)
        with self._lock:
            if not self._requests:
                raise EncoderForgeError("this openvino session is closed; load the artifact again")
            idle = self._requests[None] if bucket is None else self._static(bucket)
        if bucket is None:
            return self._infer(idle, arrays)
        outputs = self._infer(idle, pad_feed(arrays, batch, bucket))
        axes = self._output_axes or {}
        return {n: trim(v, axes.get(n), batch, sequence, bucket) for n, v in outputs.items()}

    def _infer(self, idle: queue.SimpleQueue[Any], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = idle.get()  # waits while `parallel_calls` others run
        try:
            request.infer(arrays)
            return {name: np.array(request.get_tensor(name).data, copy=True) for name in self._outputs}
        finally:
            idle.put(request)

    def close(self) -> None:
        """Later run() calls fail; calls already running finish on the requests they hold."""
        with self._lock:
            self._requests = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class OpenVinoBackend:
    name: str = "openvino"
    concurrent_calls: bool = False

    def available(self) -> str | None:
        try:
            import openvino as ov
        except ImportError:
            return "openvino is not installed (pip install 'encoderforge[openvino]')"
        if "CPU" not in ov.Core().available_devices:
            return f"openvino sees no CPU device (devices: {ov.Core().available_devices})"
        return None

    def load(self, artifact: Artifact, **options: Any) -> OpenVinoSession:
        """Compile the artifact's graph (or its graph file named by `graph`, e.g. the KV-cache graph) for this CPU."""
        reason = self.available()
        if reason is not None:
            raise UnsupportedError(f"backend {self.name!r} is unavailable: {reason}")
        import openvino as ov

        graph = options.pop("graph", None)
        settings = OpenVinoOptions.from_kwargs(options)
        if settings.static_sequences and artifact.manifest.padding_sensitive:
            raise UnsupportedError(f"static_sequences pads requests, and padding changes {artifact.family}'s outputs "
                                   f"({artifact.path}); load it without static_sequences")
        model_path = graph_file(artifact, graph)
        if not model_path.is_file():
            raise InputError(f"graph {str(model_path)!r} does not exist; re-export the artifact")
        graph_proto = onnx.load(str(model_path), load_external_data=False)  # read once for both checks
        why_not = refusal(self.name, graph_ops(graph_proto)) or saturation_refusal(model_path, graph_proto)
        if why_not is not None:
            raise UnsupportedError(f"{model_path}: {why_not}")
        axes: dict[str, Sequence[str | int | None]] | None = None
        if graph is None:
            axes = {spec.name: spec.axes for spec in artifact.manifest.outputs}
        core = ov.Core()
        try:
            model = core.read_model(str(model_path))
        except RuntimeError as exc:
            raise EncoderForgeError(f"openvino cannot read {str(model_path)!r}: "
                                    f"{str(exc).strip().splitlines()[0]}") from exc
        quantized = any(op.get_type_name() == "FakeQuantize" or op.get_type_name() == "QuantizeLinear"
                        for op in model.get_ops())
        precision = "int8" if quantized else settings.resolved_precision()
        session = OpenVinoSession(core, model, settings, precision=precision, output_axes=axes,
                                  source=str(model_path))
        log.info("loaded %s with openvino %s (precision %s, %s threads, %d stream(s))", model_path,
                 ov.get_version(), precision, settings.intra_op_threads or "default", settings.streams)
        return session


BACKENDS.register("openvino", OpenVinoBackend(), aliases=("ov",))

"""ONNX Runtime on CUDA: IO binding with device buffers reused across calls, length bucketing, CUDA graphs.

    feed (b, s) -> bucket (B, S) = smallest batch / sequence buckets >= (b, s) -> pad (padding.py)
      -> the bucket's bound OrtValues on the GPU: update_inplace(inputs), run_with_iobinding
      -> outputs' OrtValues -> host, trimmed back to (b, s), fp16 widened to float32

With bucketing a handful of shapes serve every request, so each shape's input and output buffers are
allocated once and bound once. `cuda_graph=True` then captures one CUDA graph per bucket (run option
gpu_graph_id) and replays it: every node must run on the CUDA EP and every output shape must follow from the
input shapes, or onnxruntime refuses and we say so. Requests above the largest bucket run unpadded, without
a graph. fp16 graphs need nothing special: inputs stay int64, outputs come back as float32.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.errors import EncoderForgeError, InputError, UnsupportedError
from encoderforge.runtime.backends import BACKENDS, SessionBase, TensorInfo
from encoderforge.runtime.backends.base import graph_file
from encoderforge.runtime.backends.onnxruntime import OrtBackend, OrtOptions
from encoderforge.runtime.backends.padding import as_host_float, bucket_for, feed_shape, pad_feed, trim

log = logging.getLogger(__name__)

SEQUENCE_BUCKETS = (16, 32, 64, 128, 192, 256, 384, 512)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_NP_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
             "tensor(float16)": np.float16, "tensor(bool)": np.bool_}


@dataclass(frozen=True, kw_only=True)
class CudaOptions(OrtOptions):
    """OrtOptions plus the CUDA path's: bucketing pads requests to a few shapes; cuda_graph replays them."""

    bucketing: bool = True
    sequence_buckets: tuple[int, ...] = SEQUENCE_BUCKETS
    batch_buckets: tuple[int, ...] = BATCH_BUCKETS
    cuda_graph: bool = False
    max_bound_shapes: int = 64  # buffers kept for this many shapes (least recently used dropped first)

    def __post_init__(self) -> None:
        for name in ("sequence_buckets", "batch_buckets"):
            buckets = getattr(self, name)
            if not buckets or any(int(b) < 1 for b in buckets) or list(buckets) != sorted(set(buckets)):
                raise UnsupportedError(f"{name} {buckets!r} must be increasing positive sizes, e.g. {SEQUENCE_BUCKETS}")
        if self.cuda_graph and not self.bucketing:
            raise UnsupportedError("cuda_graph=True needs bucketing=True: a graph is captured per bucket shape, "
                                   "and unbucketed lengths would capture one per request length")
        if self.max_bound_shapes < 1:
            raise UnsupportedError(f"max_bound_shapes must be >= 1, got {self.max_bound_shapes}")

    def provider_options(self) -> dict[str, str]:
        options = {"device_id": str(self.device_id)}
        if self.cuda_graph:
            options["enable_cuda_graph"] = "1"
        return options

    def bucket(self, batch: int, sequence: int) -> tuple[int, int] | None:
        """The padded (batch, sequence) for a request, or None to run it as it is (no bucketing, or above
        the largest bucket)."""
        if not self.bucketing:
            return None
        b, s = bucket_for(batch, self.batch_buckets), bucket_for(sequence, self.sequence_buckets)
        return None if b is None or s is None else (b, s)


def _dims(spec: list[Any], shapes: dict[str, tuple[int, ...]], inputs: list[Any]) -> tuple[int, ...] | None:
    """An output's concrete shape from the inputs' symbolic dims, or None when a dim does not follow."""
    sizes: dict[str, int] = {}
    for value in inputs:
        for dim, size in zip(value.shape, shapes[value.name]):
            if isinstance(dim, str):
                sizes[dim] = size
    resolved = [d if isinstance(d, int) else sizes.get(d) if isinstance(d, str) else None for d in spec]
    return None if any(d is None for d in resolved) else tuple(int(d) for d in resolved if d is not None)


class _Bound:
    """One shape's device buffers and IO binding, reused for every request of that shape."""

    def __init__(self, session: Any, shapes: dict[str, tuple[int, ...]], device: str, device_id: int,
                 graph_id: int, require_static: bool) -> None:
        import onnxruntime as ort

        self.binding = session.io_binding()
        self.inputs = {}
        for value in session.get_inputs():
            dtype = _NP_TYPES[value.type]
            self.inputs[value.name] = ort.OrtValue.ortvalue_from_shape_and_type(
                shapes[value.name], dtype, device, device_id)
            self.binding.bind_ortvalue_input(value.name, self.inputs[value.name])
        self.outputs: dict[str, Any] = {}
        for value in session.get_outputs():
            shape = _dims(value.shape, shapes, session.get_inputs())
            if shape is None:
                if require_static:
                    raise UnsupportedError(f"cuda_graph=True needs output {value.name}'s shape {value.shape} to "
                                           "follow from the input shapes; load with cuda_graph=False")
                self.binding.bind_output(value.name, device, device_id)
                continue
            self.outputs[value.name] = ort.OrtValue.ortvalue_from_shape_and_type(
                shape, _NP_TYPES.get(value.type, np.float32), device, device_id)
            self.binding.bind_ortvalue_output(value.name, self.outputs[value.name])
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry("gpu_graph_id", str(graph_id))

    def run(self, session: Any, feed: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        for name, array in feed.items():
            self.inputs[name].update_inplace(array)
        session.run_with_iobinding(self.binding, self.run_options)
        if len(self.outputs) == len(names):
            return {name: self.outputs[name].numpy() for name in names}
        return dict(zip(names, self.binding.copy_outputs_to_cpu()))


class OrtCudaSession(SessionBase):
    backend = "onnxruntime-cuda"

    def __init__(self, session: Any, options: CudaOptions, *, device: str = "cuda") -> None:
        """`device` is where the bound buffers live: "cuda" (tests bind "cpu" buffers to a CPU session to
        check bucketing, padding and buffer reuse without a GPU)."""
        self._session = session
        self._device = device
        self._lock = threading.Lock()  # one request at a time owns the shared device buffers
        self._options = options
        self._input_types = {v.name: _NP_TYPES.get(v.type, np.int64) for v in session.get_inputs()}
        self._output_names = [o.name for o in session.get_outputs()]
        self._bound: OrderedDict[tuple[tuple[int, ...], ...], _Bound] = OrderedDict()
        self._graph_ids: dict[tuple[tuple[int, ...], ...], int] = {}
        # the graph's symbolic dims ("batch", "sequence") say which output axes to trim after padding
        self._output_axes = {o.name: list(o.shape) for o in session.get_outputs()}

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(v.name, v.type, tuple(v.shape)) for v in self._session.get_inputs()]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(v.name, v.type, tuple(v.shape)) for v in self._session.get_outputs()]

    @property
    def bound_shapes(self) -> list[tuple[tuple[int, ...], ...]]:
        """The shapes whose device buffers are held (a few, with bucketing)."""
        return list(self._bound)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise EncoderForgeError("this onnxruntime-cuda session is closed; load the artifact again")
        if set(feed) != set(self._input_types):
            raise InputError(f"feed has {sorted(feed)}, the graph takes {sorted(self._input_types)}")
        arrays: dict[str, np.ndarray] = {n: np.asarray(feed[n], dtype=self._input_types[n]) for n in self._input_types}
        batch, sequence = feed_shape(arrays)
        bucket = self._options.bucket(batch, sequence)
        padded = arrays if bucket is None else pad_feed(arrays, *bucket)
        key = tuple(padded[n].shape for n in self._input_types)
        with self._lock:
            bound = self._bind(key, {n: a.shape for n, a in padded.items()}, graph=bucket is not None)
            results = bound.run(self._session, padded, self._output_names)
        padded_seq = next(iter(padded.values())).shape[-1]
        return {name: as_host_float(trim(value, self._output_axes.get(name), batch, sequence, padded_seq))
                for name, value in results.items()}

    def _bind(self, key: tuple[tuple[int, ...], ...], shapes: dict[str, tuple[int, ...]], graph: bool) -> _Bound:
        if key in self._bound:
            self._bound.move_to_end(key)
            return self._bound[key]
        use_graph = self._options.cuda_graph and graph
        graph_id = self._graph_ids.setdefault(key, len(self._graph_ids)) if use_graph else -1
        bound = _Bound(self._session, shapes, self._device, self._options.device_id, graph_id,
                       require_static=use_graph)
        self._bound[key] = bound
        # Captured graphs point at their buffers, so with cuda_graph bucketed shapes are never dropped.
        while len(self._bound) > self._options.max_bound_shapes:
            oldest = next((k for k in self._bound if k not in self._graph_ids), None)
            if oldest is None:
                break
            del self._bound[oldest]
        return bound

    def close(self) -> None:
        self._bound.clear()
        self._session = None


@dataclass
class OrtCudaBackend:
    name: str = "onnxruntime-cuda"
    concurrent_calls: bool = False
    provider: str = "CUDAExecutionProvider"

    def available(self) -> str | None:
        return OrtBackend(self.name, self.provider, True).available()  # the provider check, said one way

    def load(self, artifact: Artifact, **options: Any) -> OrtCudaSession:
        import onnxruntime as ort

        reason = self.available()
        if reason is not None:
            raise UnsupportedError(f"backend {self.name!r} is unavailable: {reason}")
        settings = CudaOptions.from_kwargs(options)
        model_path = str(graph_file(artifact, settings.graph))
        if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21 finds CUDA/cuDNN from pip wheels this way
            try:
                ort.preload_dlls()
            except (OSError, RuntimeError) as exc:  # system CUDA libraries may still be found by the EP
                log.debug("onnxruntime.preload_dlls(): %s", exc)
        try:
            session = ort.InferenceSession(model_path, settings.session_options(),
                                           providers=[(self.provider, settings.provider_options())])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/RuntimeException types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = " (cuda_graph=True needs every node on the CUDA EP; try cuda_graph=False)" if settings.cuda_graph else ""
            raise EncoderForgeError(f"onnxruntime cannot load {model_path!r} on CUDA: {first}{hint}") from exc
        if session.get_providers()[0] != self.provider:
            raise UnsupportedError(f"onnxruntime chose {session.get_providers()[0]} instead of {self.provider}; "
                                   "check the CUDA and cuDNN install (onnxruntime.preload_dlls())")
        log.info("loaded %s with %s %s", model_path, self.provider, settings.provider_options())
        return OrtCudaSession(session, settings)


BACKENDS.register("onnxruntime-cuda", OrtCudaBackend(), aliases=("cuda",))

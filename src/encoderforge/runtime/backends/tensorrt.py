"""TensorRT backend: a Session over a serialized engine, run with device buffers on a CUDA stream (no torch).

    feed -> choose the optimization profile for (batch, sequence) -> pad to the profile's minimum
         -> set_input_shape / set_tensor_address per named I/O tensor -> execute_async_v3(stream)
         -> copy outputs back, synchronize -> trim to the request's batch and sequence

Device buffers grow to the largest shape seen and are reused. A batch larger than every profile at that
length is split. `load(artifact)` uses the engine recorded in the artifact's manifest that matches this GPU,
TensorRT and graph (a stale or foreign one is refused, saying why); the `engine` option names a .plan instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.errors import EncoderForgeError, InputError, UnsupportedError
from encoderforge.runtime.backends import BACKENDS, SessionBase, TensorInfo
from encoderforge.runtime.backends.base import refuse_unknown
from encoderforge.runtime.backends.cuda import (
    DeviceBuffer,
    Stream,
    check,
    cuda_unavailable_reason,
    cudart,
    device_info,
)
from encoderforge.runtime.backends.engine_lookup import Machine, find_engine
from encoderforge.runtime.backends.padding import as_host_float, feed_shape, pad_feed, trim
from encoderforge.runtime.backends.profiles import (
    AxisRange,
    Bucket,
    Profile,
    max_batch_for,
    no_profile,
    select_profile,
)

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)
Axes = Sequence[str | int | None]
TENSORRT_HINT = ("install TensorRT 10 or 11 for your CUDA version (pip install 'encoderforge[tensorrt]', "
                 "which needs NVIDIA's package index) on a machine with an NVIDIA GPU")


def require_tensorrt() -> Any:
    """The tensorrt module; UnsupportedError naming the install when it is missing."""
    try:
        import tensorrt
    except ImportError as exc:
        raise UnsupportedError(f"TensorRT is not installed ({exc}); {TENSORRT_HINT}") from exc
    if not hasattr(tensorrt, "Builder"):  # e.g. only tensorrt-stubs' .pyi files: an empty namespace package
        raise UnsupportedError(f"the importable 'tensorrt' ({list(getattr(tensorrt, '__path__', []))}) is not "
                               f"TensorRT's Python bindings (type stubs only?); {TENSORRT_HINT}")
    return tensorrt


def tensorrt_version() -> str:
    return str(require_tensorrt().__version__)


def current_machine(device_id: int = 0) -> Machine:
    """This GPU and TensorRT (TensorRT is checked first: its absence is the likelier and clearer reason)."""
    version = tensorrt_version()
    info = device_info(device_id)
    return Machine(info.name, info.compute_capability, version)


def dims(value: trt.Dims) -> tuple[int, ...]:
    """A Dims as a tuple (tensorrt-stubs' Dims has no __iter__; the real one iterates like a tuple)."""
    return tuple(value[i] for i in range(len(value)))


def engine_profiles(engine: trt.ICudaEngine, name: str) -> list[Profile]:
    """The engine's own optimization profiles, read from one input: axis 0 is batch, the last is sequence,
    any middle axis (num_choices) is `other`."""
    profiles = []
    for index in range(engine.num_optimization_profiles):
        low, opt, high = (dims(d) for d in engine.get_tensor_profile_shape(name, index))
        other = AxisRange(low[1], opt[1], high[1]) if len(low) == 3 else AxisRange(1, 1, 1)
        profiles.append(Profile(Bucket(high[0], high[-1]), AxisRange(low[0], opt[0], high[0]),
                                AxisRange(low[-1], opt[-1], high[-1]), other))
    return profiles


class TrtSession(SessionBase):
    backend = "tensorrt"

    def __init__(self, plan: bytes, *, device_id: int = 0, output_axes: Mapping[str, Axes] | None = None,
                 source: str = "engine") -> None:
        require_tensorrt()
        import tensorrt as trt  # typed by tensorrt-stubs under mypy

        check(cudart().cudaSetDevice(device_id), "cudaSetDevice")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise UnsupportedError(f"TensorRT {trt.__version__} cannot deserialize {source} (built by another "
                                   "TensorRT version or for another GPU?); rebuild it with `encoderforge build-engine`")
        self._engine: trt.ICudaEngine | None = engine
        self._context: trt.IExecutionContext | None = engine.create_execution_context()
        if self._context is None:
            raise EncoderForgeError(f"TensorRT could not create an execution context for {source} "
                                    "(out of GPU memory?); free memory or rebuild with smaller profiles")
        self._stream = Stream()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [n for n in names if is_input[n]]
        self._outputs = [n for n in names if not is_input[n]]
        nptype: Any = getattr(trt, "nptype")  # noqa: B009 (untyped in tensorrt-stubs)
        self._dtypes = {n: np.dtype(nptype(engine.get_tensor_dtype(n))) for n in names}
        self._shapes = {n: dims(engine.get_tensor_shape(n)) for n in names}
        self._buffers = {n: DeviceBuffer() for n in names}
        self._profiles = engine_profiles(engine, self._inputs[0])
        self._active = 0
        self._output_axes = output_axes
        self._source = source
        self._lock = threading.Lock()  # one request at a time owns the context and the device buffers

    @property
    def profiles(self) -> list[Profile]:
        return list(self._profiles)

    def _info(self, names: list[str]) -> list[TensorInfo]:
        return [TensorInfo(n, self._dtypes[n].name, tuple(None if d < 0 else d for d in self._shapes[n]))
                for n in names]

    def inputs(self) -> list[TensorInfo]:
        return self._info(self._inputs)

    def outputs(self) -> list[TensorInfo]:
        return self._info(self._outputs)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._context is None:
            raise EncoderForgeError("this TensorRT session is closed; load the artifact again")
        missing, extra = set(self._inputs) - set(feed), set(feed) - set(self._inputs)
        if missing or extra:
            raise InputError(f"feed has {sorted(feed)}, the engine takes {self._inputs}; "
                             f"missing {sorted(missing)}, unknown {sorted(extra)}")
        arrays = {n: np.asarray(feed[n], dtype=self._dtypes[n]) for n in self._inputs}
        batch, sequence = feed_shape(arrays)
        limit = max_batch_for(self._profiles, sequence)
        if limit == 0:
            raise no_profile(self._profiles, batch, sequence)
        if batch <= limit:
            return self._run_one(arrays, batch, sequence)
        parts = [self._run_one({n: a[i:i + limit] for n, a in arrays.items()}, min(limit, batch - i), sequence)
                 for i in range(0, batch, limit)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self._outputs}

    def _run_one(self, arrays: dict[str, np.ndarray], batch: int, sequence: int) -> dict[str, np.ndarray]:
        with self._lock:
            return self._execute(arrays, batch, sequence)

    def _execute(self, arrays: dict[str, np.ndarray], batch: int, sequence: int) -> dict[str, np.ndarray]:
        choice = select_profile(self._profiles, batch, sequence)
        profile = self._profiles[choice.index]
        for name, array in arrays.items():
            if array.ndim == 3 and not profile.other.contains(array.shape[1]):
                raise InputError(f"{name} has {array.shape[1]} choices, outside the engine's range "
                                 f"{profile.other.min}..{profile.other.max}; rebuild with a wider range")
        padded = pad_feed(arrays, choice.batch, choice.sequence)
        context, stream = self._context, self._stream
        if context is None:
            raise EncoderForgeError("this TensorRT session is closed; load the artifact again")
        if choice.index != self._active:
            if not context.set_optimization_profile_async(choice.index, stream.ptr):
                raise EncoderForgeError(f"TensorRT refused optimization profile {choice.index} of {self._source}")
            self._active = choice.index
        for name, array in padded.items():
            context.set_input_shape(name, array.shape)
            context.set_tensor_address(name, self._buffers[name].upload(array, stream))
        results = {}
        for name in self._outputs:
            shape = dims(context.get_tensor_shape(name))
            results[name] = np.empty(shape, dtype=self._dtypes[name])
            context.set_tensor_address(name, self._buffers[name].reserve(results[name].nbytes))
        if not context.execute_async_v3(stream.ptr):
            raise EncoderForgeError(f"TensorRT failed to run {self._source} at shape {choice.batch}x{choice.sequence}; "
                                    "see TensorRT's log above")
        for name, host in results.items():
            self._buffers[name].download(host, stream)
        stream.synchronize()
        del padded  # the host copies the uploads read from lived until the stream finished
        axes = self._output_axes or {}
        return {name: as_host_float(trim(value, axes.get(name), batch, sequence, choice.sequence))
                for name, value in results.items()}

    def close(self) -> None:
        if self._context is None:
            return
        self._stream.synchronize()
        for buffer in self._buffers.values():
            buffer.free()
        self._stream.close()
        self._context = None
        self._engine = None


@dataclass
class TensorRTBackend:
    name: str = "tensorrt"
    concurrent_calls: bool = False

    def available(self) -> str | None:
        try:
            require_tensorrt()
        except UnsupportedError as exc:
            return str(exc)
        return cuda_unavailable_reason()

    def load(self, artifact: Artifact, **options: Any) -> TrtSession:
        """The artifact's engine for this GPU and TensorRT (found in its manifest).
        Options: device_id (0), engine (a .plan path that overrides the lookup)."""
        refuse_unknown("tensorrt", options, ("device_id", "engine"))
        reason = self.available()
        if reason is not None:
            raise UnsupportedError(f"backend 'tensorrt' is unavailable: {reason}")
        device_id = int(options.get("device_id", 0))
        if options.get("engine"):
            path = Path(options["engine"])
        else:
            lookup = find_engine(artifact, current_machine(device_id))
            if lookup.entry is None:
                raise UnsupportedError(f"no TensorRT engine in {artifact.path} runs here ({lookup.explain()}); "
                                       f"run `encoderforge build-engine {artifact.path}` on this machine")
            path = artifact.path / lookup.entry.file
        output_axes = artifact.manifest.output_axes()
        if not path.is_file():
            raise UnsupportedError(f"engine file {path} does not exist; build it with `encoderforge build-engine`")
        log.info("loading TensorRT engine %s", path)
        return TrtSession(path.read_bytes(), device_id=device_id, output_axes=output_axes, source=str(path))


BACKENDS.register("tensorrt", TensorRTBackend(), aliases=("trt",))

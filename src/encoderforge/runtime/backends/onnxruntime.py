"""ONNX Runtime backends: CPU, and CUDA with IO binding (when onnxruntime-gpu and a GPU are present)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from typing_extensions import Self

from encoderforge.artifact import Artifact
from encoderforge.errors import EncoderForgeError, UnsupportedError
from encoderforge.runtime.backends import BACKENDS, SessionBase, TensorInfo
from encoderforge.runtime.backends.base import graph_file, refuse_unknown
from encoderforge.runtime.backends.saturation import saturation_refusal

log = logging.getLogger(__name__)

OptimizationLevel = Literal["disable", "basic", "extended", "all"]


@dataclass(frozen=True, kw_only=True)
class OrtOptions:
    """Session settings; None means onnxruntime's default."""

    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    optimization_level: OptimizationLevel = "all"
    enable_memory_arena: bool = True
    enable_memory_pattern: bool = True
    device_id: int = 0
    graph: str | None = None  # another graph file of the artifact (e.g. the KV-cache graph); None: model_file

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> Self:
        refuse_unknown("onnxruntime", options, tuple(f.name for f in fields(cls)))
        return cls(**options)

    def session_options(self, *, optimized_model_path: str | None = None) -> Any:
        """The one place onnxruntime SessionOptions are built (runtime, fidelity checks, passes, bench);
        `optimized_model_path` makes onnxruntime write the graph it optimized at load time there."""
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if self.optimization_level not in levels:
            raise UnsupportedError(
                f"unknown optimization_level {self.optimization_level!r}; choose one of {sorted(levels)}"
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[self.optimization_level]
        if self.intra_op_threads is not None:
            so.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            so.inter_op_num_threads = self.inter_op_threads
        so.enable_cpu_mem_arena = self.enable_memory_arena
        so.enable_mem_pattern = self.enable_memory_pattern
        so.log_severity_level = 3
        if optimized_model_path is not None:
            so.optimized_model_filepath = optimized_model_path
        return so


def _info(values: Any) -> list[TensorInfo]:
    return [TensorInfo(v.name, v.type, tuple(v.shape)) for v in values]


class OrtSession(SessionBase):
    def __init__(self, session: Any, backend: str, io_binding: bool, device_id: int = 0) -> None:
        self._session = session
        self.backend = backend
        self._io_binding = io_binding
        self._device_id = device_id
        self._output_names = [o.name for o in session.get_outputs()]

    def inputs(self) -> list[TensorInfo]:
        return _info(self._session.get_inputs())

    def outputs(self) -> list[TensorInfo]:
        return _info(self._session.get_outputs())

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._io_binding:
            return dict(zip(self._output_names, self._session.run(self._output_names, feed)))
        binding = self._session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self._output_names:
            binding.bind_output(name, "cuda", self._device_id)
        self._session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def close(self) -> None:
        self._session = None


@dataclass(frozen=True)
class OrtBackend:
    name: str
    provider: str
    io_binding: bool

    @property
    def concurrent_calls(self) -> bool:
        return self.provider == "CPUExecutionProvider"

    def available(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        if self.provider not in ort.get_available_providers():
            return (f"{self.provider} is not in onnxruntime's providers {ort.get_available_providers()}; "
                    "install onnxruntime-gpu (pip install 'encoderforge[gpu]') on a machine with CUDA")
        return None

    def load(self, artifact: Artifact, **options: Any) -> OrtSession:
        import onnxruntime as ort

        reason = self.available()
        if reason is not None:
            raise UnsupportedError(f"backend {self.name!r} is unavailable: {reason}")
        settings = OrtOptions.from_kwargs(options)
        model_path = str(graph_file(artifact, settings.graph))
        if self.provider == "CPUExecutionProvider":
            why_not = saturation_refusal(Path(model_path), integer_kernels=settings.optimization_level != "disable")
            if why_not is not None:
                raise UnsupportedError(f"{model_path}: {why_not}")
        provider: Any = self.provider
        if self.provider == "CUDAExecutionProvider":
            provider = (self.provider, {"device_id": settings.device_id})
        try:
            session = ort.InferenceSession(model_path, settings.session_options(), providers=[provider])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EncoderForgeError(f"onnxruntime cannot load {model_path!r}: {str(exc).splitlines()[0]}") from exc
        active = session.get_providers()[0]
        if active != self.provider:
            raise UnsupportedError(f"onnxruntime chose {active} instead of {self.provider}; check the CUDA install")
        log.info("loaded %s with %s", model_path, active)
        return OrtSession(session, self.name, self.io_binding, settings.device_id)


BACKENDS.register("onnxruntime-cpu", OrtBackend("onnxruntime-cpu", "CPUExecutionProvider", False), aliases=("cpu",))
# "onnxruntime-cuda" (IO binding, bucketing, CUDA graphs) lives in onnxruntime_cuda.py.

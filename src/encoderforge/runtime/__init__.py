"""Runtime: load an artifact and serve its task with onnxruntime (or TensorRT), `tokenizers` and numpy.

Imports neither torch nor transformers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from encoderforge.artifact import Artifact
from encoderforge.errors import UnsupportedError
from encoderforge.runtime.backends import BACKENDS, Session, get_backend
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import Pipeline

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]


def choose_backend(device: Device, backend: str | None, artifact: Artifact | None = None) -> str:
    """The backend name for a device: explicit choices must be available; `auto` prefers CUDA when present.
    On CUDA, an artifact's TensorRT engine is used when one matches this GPU, TensorRT and graph; otherwise
    onnxruntime-cuda (whose load fails, naming what is missing, where CUDA is not usable: never a CPU fallback)."""
    if backend is not None:
        return BACKENDS.canonical(backend)
    if device == "cpu":
        return "onnxruntime-cpu"
    if device == "cuda":
        return "tensorrt" if _usable_engine(artifact) else "onnxruntime-cuda"
    if device != "auto":
        raise UnsupportedError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if _usable_engine(artifact):
        return "tensorrt"
    return "onnxruntime-cuda" if get_backend("onnxruntime-cuda").available() is None else "onnxruntime-cpu"


def _usable_engine(artifact: Artifact | None) -> bool:
    """Whether the artifact holds a TensorRT engine that runs here; logs why not when it holds any."""
    from encoderforge.engines.cache import engine_entries, find_engine

    if artifact is None or not engine_entries(artifact):
        return False
    reason = get_backend("tensorrt").available()
    if reason is not None:
        log.info("%s has TensorRT engines, but TensorRT is unusable here: %s", artifact.path, reason)
        return False
    from encoderforge.runtime.backends.tensorrt import current_machine

    lookup = find_engine(artifact, current_machine())
    if lookup.entry is None:
        log.warning("not using %s's TensorRT engines (%s); rebuild with `encoderforge build-engine %s`",
                    artifact.path, lookup.explain(), artifact.path)
    return lookup.entry is not None


def load(path: str | Path, *, device: Device = "auto", backend: str | None = None, verify: bool = True,
         **backend_options: Any) -> Pipeline:
    """Load an artifact as its task's pipeline; `backend_options` go to the backend (e.g. intra_op_threads)."""
    artifact = Artifact.load(path, verify=verify)
    name = choose_backend(device, backend, artifact)
    session: Session
    if name == "openvino":  # takes the Artifact (issue 11 moves every backend to that signature)
        from encoderforge.runtime.backends.openvino import OpenVinoBackend

        session = OpenVinoBackend().load(artifact, **backend_options)
    else:
        session = get_backend(name).load(str(artifact.model_path), **backend_options)
    log.info("%s: task %s on %s", artifact.path, artifact.task, name)
    return PIPELINES.get(artifact.task)(artifact, session)

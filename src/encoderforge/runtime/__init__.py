"""Runtime: load an artifact and serve its task with onnxruntime (or TensorRT), `tokenizers` and numpy.

Imports neither torch nor transformers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from encoderforge.artifact import Artifact
from encoderforge.errors import UnsupportedError
from encoderforge.runtime.backends import BACKENDS, get_backend
from encoderforge.runtime.pipelines import PIPELINES, Pipeline

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]


def choose_backend(device: Device, backend: str | None) -> str:
    """The backend name for a device: explicit choices must be available; `auto` prefers CUDA when present."""
    if backend is not None:
        return BACKENDS.canonical(backend)
    if device == "cpu":
        return "onnxruntime-cpu"
    if device == "cuda":
        return "onnxruntime-cuda"
    if device != "auto":
        raise UnsupportedError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return "onnxruntime-cuda" if get_backend("onnxruntime-cuda").available() is None else "onnxruntime-cpu"


def load(path: str | Path, *, device: Device = "auto", backend: str | None = None, verify: bool = True,
         **backend_options: Any) -> Pipeline:
    """Load an artifact as its task's pipeline; `backend_options` go to the backend (e.g. intra_op_threads)."""
    artifact = Artifact.load(path, verify=verify)
    name = choose_backend(device, backend)
    session = get_backend(name).load(str(artifact.model_path), **backend_options)
    log.info("%s: task %s on %s", artifact.path, artifact.task, name)
    return PIPELINES.get(artifact.task)(artifact, session)

"""Runtime: load an artifact and serve its task with onnxruntime (or TensorRT), `tokenizers` and numpy.

Imports neither torch nor transformers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from encoderforge.artifact import Artifact
from encoderforge.errors import InputError, UnsupportedError
from encoderforge.manifest import EngineEntry
from encoderforge.runtime.backends import BACKENDS, get_backend
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import Pipeline

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]


def choose_backend(device: Device, backend: str | None, artifact: Artifact | None = None) -> str:
    """The backend name for a device: explicit choices must be available; `auto` prefers CUDA when present.
    On CUDA, an artifact's TensorRT engine is used when one matches this GPU, TensorRT and graph; otherwise
    onnxruntime-cuda (whose load fails, naming what is missing, where CUDA is not usable: never a CPU fallback)."""
    return _choose(device, backend, artifact)[0]


def _choose(device: Device, backend: str | None, artifact: Artifact | None) -> tuple[str, EngineEntry | None]:
    """choose_backend, plus the TensorRT engine entry it found (so the backend does not look it up again)."""
    if backend is not None:
        return BACKENDS.canonical(backend), None
    if device == "cpu":
        return "onnxruntime-cpu", None
    if device not in ("auto", "cuda"):
        raise UnsupportedError(f"unknown device {device!r}; choose auto, cpu or cuda")
    engine = _usable_engine(artifact)
    if engine is not None:
        return "tensorrt", engine
    if device == "cuda":
        return "onnxruntime-cuda", None
    return ("onnxruntime-cuda" if get_backend("onnxruntime-cuda").available() is None else "onnxruntime-cpu"), None


def _usable_engine(artifact: Artifact | None) -> EngineEntry | None:
    """The artifact's TensorRT engine that runs here, if any; logs why not when it holds some."""
    from encoderforge.runtime.backends.engine_lookup import find_engine

    if artifact is None or not artifact.manifest.engines:
        return None
    reason = get_backend("tensorrt").available()
    if reason is not None:
        log.info("%s has TensorRT engines, but TensorRT is unusable here: %s", artifact.path, reason)
        return None
    from encoderforge.runtime.backends.tensorrt import current_machine

    lookup = find_engine(artifact, current_machine())
    if lookup.entry is None:
        log.warning("not using %s's TensorRT engines (%s); rebuild with `encoderforge build-engine %s`",
                    artifact.path, lookup.explain(), artifact.path)
    return lookup.entry


def load(path: str | Path, *, device: Device = "auto", backend: str | None = None, verify: bool = True,
         max_chars: int | None = None, **backend_options: Any) -> Pipeline:
    """Load an artifact as its task's pipeline; `backend_options` go to the backend (e.g. intra_op_threads).
    `max_chars`: characters per text the pipeline accepts (default 1,000,000), checked before tokenizing.
    The pipeline (and encode()) may be called from many threads at once."""
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise InputError(f"max_chars must be a positive int (characters per text), got {max_chars!r}")
    artifact = Artifact.load(path, verify=verify)
    name, engine = _choose(device, backend, artifact)
    if engine is not None and "engine" not in backend_options:  # found above: no second lookup
        backend_options = {**backend_options, "engine": str(artifact.path / engine.file)}
    session = get_backend(name).load(artifact, **backend_options)
    log.info("%s: task %s on %s", artifact.path, artifact.task, name)
    pipe = PIPELINES.get(artifact.task)(artifact, session)
    if max_chars is not None:
        pipe.tokenizer.max_chars = max_chars
    return pipe

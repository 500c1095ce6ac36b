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
    On CPU, the backend `optimize --precision auto` recorded in the manifest, when it still applies here.
    On CUDA, an artifact's TensorRT engine is used when one matches this GPU, TensorRT and graph; otherwise
    onnxruntime-cuda (whose load fails, naming what is missing, where CUDA is not usable: never a CPU fallback)."""
    return _choose(device, backend, artifact)[0]


Choice = tuple[str, EngineEntry | None, dict[str, Any]]  # backend, TensorRT engine, options recorded by auto


def _choose(device: Device, backend: str | None, artifact: Artifact | None) -> Choice:
    """choose_backend, plus the TensorRT engine entry it found (so the backend does not look it up again) and
    the backend options auto recorded."""
    if backend is not None:
        return BACKENDS.canonical(backend), None, {}
    if device not in ("auto", "cpu", "cuda"):
        raise UnsupportedError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device != "cpu":
        engine = _usable_engine(artifact)
        if engine is not None:
            return "tensorrt", engine, {}
        if device == "cuda" or get_backend("onnxruntime-cuda").available() is None:
            return "onnxruntime-cuda", None, {}
    name, options = recorded_choice(artifact) or ("onnxruntime-cpu", {})
    return name, None, options


def recorded_choice(artifact: Artifact | None) -> tuple[str, dict[str, Any]] | None:
    """The backend and options `optimize --precision auto` chose for this artifact, when it still applies here:
    its backend is installed and this CPU has an instruction set the choice was measured with. Otherwise None,
    with a warning that says what runs instead and why."""
    from encoderforge.cpu import current_cpu

    selection = None if artifact is None else artifact.manifest.selection
    if artifact is None or selection is None:
        return None
    why_not = get_backend(selection.backend).available()
    cpu = current_cpu()
    if why_not is None and selection.cpu_features and not cpu.flags & set(selection.cpu_features):
        why_not = (f"it was chosen on a CPU with {', '.join(selection.cpu_features)} ({selection.cpu_model}) and this "
                   f"one ({cpu.model}) has none of them")
    if why_not is None:
        return selection.backend, dict(selection.options)
    if selection.backend == "onnxruntime-cpu":
        log.warning("%s: running on onnxruntime-cpu as chosen, but %s; re-run `encoderforge optimize` on this "
                    "machine for its fastest choice", artifact.path, why_not)
        return None
    log.warning("%s: optimize chose %s %s, but %s; running on onnxruntime-cpu instead (re-run `encoderforge "
                "optimize` here, or install the backend)", artifact.path, selection.backend, selection.precision,
                why_not)
    return None


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
    name, engine, recorded = _choose(device, backend, artifact)
    if engine is not None and "engine" not in backend_options:  # found above: no second lookup
        backend_options = {**backend_options, "engine": str(artifact.path / engine.file)}
    backend_options = {**recorded, **backend_options}  # auto's options (e.g. openvino bf16); the caller's win
    session = get_backend(name).load(artifact, **backend_options)
    log.info("%s: task %s on %s", artifact.path, artifact.task, name)
    pipe = PIPELINES.get(artifact.task)(artifact, session)
    if max_chars is not None:
        pipe.tokenizer.max_chars = max_chars
    return pipe

"""Backends: a lazy loader that turns an artifact into a Session with `inputs()` and `run(feed)`.

`Backend.load(artifact, **options)` (see base.py). One module per backend; each registers itself in BACKENDS,
and adding one is its module plus one import line below. A requested backend or device that is not
available is an error naming what is missing, never a silent fall back to another one.
"""

from __future__ import annotations

from encoderforge.registry import Registry
from encoderforge.runtime.backends.base import Backend, Session, SessionBase, TensorInfo

__all__ = ["BACKENDS", "Backend", "Session", "SessionBase", "TensorInfo", "get_backend"]

BACKENDS: Registry[Backend] = Registry("backend")


def get_backend(name: str) -> Backend:
    return BACKENDS.get(name)


# Importing registers them (one line per backend).
from encoderforge.runtime.backends import onnxruntime as _onnxruntime  # noqa: F401
from encoderforge.runtime.backends import onnxruntime_cuda as _onnxruntime_cuda  # noqa: F401
from encoderforge.runtime.backends import openvino as _openvino  # noqa: F401
from encoderforge.runtime.backends import tensorrt as _tensorrt  # noqa: F401

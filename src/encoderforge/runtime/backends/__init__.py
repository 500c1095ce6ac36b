"""Backends: a lazy loader that turns an artifact's graph into a Session with `inputs()` and `run(feed)`.

One module per backend; each registers itself in BACKENDS. A requested backend or device that is not
available is an error naming what is missing, never a silent fall back to another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from encoderforge.registry import Registry


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]


class Session(Protocol):
    """A loaded graph. Sessions are context managers; `close()` frees device memory."""

    backend: str

    def inputs(self) -> list[TensorInfo]: ...

    def outputs(self) -> list[TensorInfo]: ...

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(self, *exc: object) -> None: ...


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    def available(self) -> str | None:
        """None when usable here, else the reason it is not (shown to the user)."""
        ...

    def load(self, model_path: str, **options: Any) -> Session: ...


BACKENDS: Registry[Backend] = Registry("backend")


def get_backend(name: str) -> Backend:
    return BACKENDS.get(name)


# Importing registers them.
from encoderforge.runtime.backends import onnxruntime as _onnxruntime  # noqa: F401
from encoderforge.runtime.backends import onnxruntime_cuda as _onnxruntime_cuda  # noqa: F401
from encoderforge.runtime.backends import openvino as _openvino  # noqa: F401
from encoderforge.runtime.backends import tensorrt as _tensorrt  # noqa: F401

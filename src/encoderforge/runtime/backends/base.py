"""What every backend shares: the Session and Backend protocols, tensor descriptions, and SessionBase.

A backend turns an `Artifact` into a Session: `Backend.load(artifact, **options)`. It runs the artifact's
graph (its `model_file`, or another graph file of the artifact named by the `graph` option, e.g. the
KV-cache graph), and it may use anything else the artifact records (engines, output axes) without
re-reading the directory. Unknown options are refused with one line naming the valid ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from typing_extensions import Self

from encoderforge.artifact import Artifact
from encoderforge.errors import UnsupportedError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]


class Session(Protocol):
    """A loaded graph. Sessions are context managers; `close()` frees device memory."""

    backend: str
    parallel_calls: int  # run() calls worth issuing at once (OpenVINO streams); 1: one at a time

    def inputs(self) -> list[TensorInfo]: ...

    def outputs(self) -> list[TensorInfo]: ...

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class SessionBase:
    """The context-manager half of a Session: `with backend.load(artifact) as session: ...` closes it."""

    backend: str = ""
    parallel_calls: int = 1

    def close(self) -> None:
        """Release the session's resources; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def concurrent_calls(self) -> bool:
        """True when its sessions run any number of `run` calls at once from many threads, each on its own
        intra-op threads (ONNX Runtime on CPU); False: at most the session's `parallel_calls`."""
        ...

    def available(self) -> str | None:
        """None when usable here, else the reason it is not (shown to the user)."""
        ...

    def load(self, artifact: Artifact, **options: Any) -> Session: ...


def graph_file(artifact: Artifact, graph: str | None) -> Path:
    """The artifact's graph to load: its model file, or `graph` (a file the manifest lists, e.g. the
    KV-cache graph); anything else is an error naming the artifact's graphs."""
    name = artifact.manifest.model_file if graph is None else graph
    if name != artifact.manifest.model_file and name not in artifact.manifest.files:
        graphs = sorted(n for n in artifact.manifest.files if n.endswith(".onnx"))
        raise UnsupportedError(f"graph {name!r} is not a file of artifact {str(artifact.path)!r}; choose one of "
                               f"{graphs}")
    return artifact.path / name


def refuse_unknown(backend: str, options: Iterable[str], known: Iterable[str]) -> None:
    valid = sorted(known)  # once: `known` may be an iterator
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UnsupportedError(f"unknown {backend} option(s) {unknown}; valid: {valid}")

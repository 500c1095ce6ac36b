"""Calibration for static INT8 and FP16: sources, activation ranges, methods and the accuracy-budget sweep.

    sources.py      text file / JSONL / iterable -> feeds tokenized with the artifact's tokenizer
    ranges.py       observed activation ranges (max |x| per tensor) of the fp32 graph, for FP16 islands
    sensitivity.py  the accuracy-budget sweep that keeps the most sensitive nodes in fp32

Calibration methods map onto onnxruntime.quantization's CalibrationMethod: ``minmax`` (per-tensor min/max),
``entropy`` (KL-divergence threshold over a histogram) and ``percentile`` (99.999th percentile of |x|).
Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from encoderforge.errors import UnsupportedError

METHODS = ("minmax", "entropy", "percentile")
T = TypeVar("T")


def calibration_method(name: str) -> Any:
    """onnxruntime's CalibrationMethod for 'minmax' | 'entropy' | 'percentile'."""
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in table:
        raise UnsupportedError(f"unknown calibration method {name!r}; choose one of: {', '.join(METHODS)}")
    return table[key]


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
    """tqdm progress bar on stderr when tqdm is importable (and not disabled), else the plain iterable."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield from iterable
        return
    yield from tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def feed_reader(feeds: Sequence[dict[str, np.ndarray]], input_names: Sequence[str], *, desc: str = "calibrating") -> Any:
    """A CalibrationDataReader over `feeds` (restricted to the graph's inputs) with a progress bar."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds = [{k: v for k, v in f.items() if k in input_names} for f in feeds]
            self._iter: Iterator[dict[str, np.ndarray]] | None = None

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._iter is None:
                self._iter = iter(progress(self._feeds, desc=desc, total=len(self._feeds)))
            return next(self._iter, None)

        def __len__(self) -> int:
            return len(self._feeds)

        def rewind(self) -> None:
            self._iter = None

        def set_range(self, start_index: int, end_index: int) -> None:
            self._iter = iter(self._feeds[start_index:end_index])

    return _Reader()

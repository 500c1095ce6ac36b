"""Padding a feed up to a bucket or profile shape, and trimming the outputs back (both GPU backends use it).

Inputs are (batch, sequence) or (batch, num_choices, sequence). Extra sequence positions are zeros, so their
attention_mask is 0 and the real tokens' outputs do not change; extra batch rows repeat the first row (a valid
input, never an all-masked row that could turn into NaN in fp16) and are dropped again afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from encoderforge.errors import InputError
from encoderforge.tasks import BATCH, NUM_CHOICES, SEQUENCE


def feed_shape(feed: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(batch, sequence) of a feed whose inputs all share them; an inconsistent feed is an InputError."""
    shapes = {name: a.shape for name, a in feed.items()}
    if not shapes:
        raise InputError("the feed is empty; pass the graph's inputs (input_ids, attention_mask, ...)")
    first = next(iter(shapes.values()))
    if len(first) < 2 or any(s != first for s in shapes.values()):
        raise InputError(f"feed arrays must share one (batch, ..., sequence) shape, got {shapes}")
    return int(first[0]), int(first[-1])


def pad_feed(feed: Mapping[str, np.ndarray], batch: int, sequence: int) -> dict[str, np.ndarray]:
    """Each array padded to `batch` rows (repeating row 0) and `sequence` positions (zeros)."""
    padded = {}
    for name, array in feed.items():
        rows, length = array.shape[0], array.shape[-1]
        if rows > batch or length > sequence:
            raise InputError(f"{name} of shape {array.shape} is larger than the bucket {batch}x{sequence}")
        if length < sequence:
            widths = [(0, 0)] * (array.ndim - 1) + [(0, sequence - length)]
            array = np.pad(array, widths)
        if rows < batch:
            array = np.concatenate([array, np.repeat(array[:1], batch - rows, axis=0)])
        padded[name] = np.ascontiguousarray(array)
    return padded


def trim(value: np.ndarray, axes: Sequence[str | int | None] | None, batch: int, sequence: int,
         padded_sequence: int) -> np.ndarray:
    """Cut an output back to the request's batch and sequence. `axes` name the output's axes as the graph
    does (a string for a dynamic axis, an int for a fixed one): axis 0 is the batch, an axis named "sequence"
    is cut; an unnamed dynamic axis (None, or a name other than batch / num_choices) whose size is the padded
    length is taken for a sequence axis too. Fixed axes are never cut."""
    index: list[slice] = [slice(None)] * value.ndim
    for i in range(value.ndim):
        name = axes[i] if axes is not None and i < len(axes) else None
        if i == 0 or name == BATCH:
            index[i] = slice(0, batch)
        elif name == SEQUENCE or (not isinstance(name, int) and name != NUM_CHOICES
                                  and value.shape[i] == padded_sequence != sequence):
            index[i] = slice(0, sequence)
    return value[tuple(index)]


def as_host_float(value: np.ndarray) -> np.ndarray:
    """fp16 outputs widened to float32, so pipelines see the same dtype on every backend."""
    return value.astype(np.float32) if value.dtype == np.float16 else value


def bucket_for(n: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket >= n, or None when n is above every bucket."""
    return min((b for b in buckets if b >= n), default=None)

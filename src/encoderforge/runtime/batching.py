"""Length-aware batching: sort by length, pad to the batch's longest, cap tokens per batch, restore order."""

from __future__ import annotations

from collections.abc import Sequence


def length_batches(lengths: Sequence[int], *, batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Group indices into batches of similar length (longest first). A batch holds at most `batch_size` items
    and, when `max_tokens` is set, at most `max_tokens` padded tokens (a single longer item still gets a batch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        full = len(current) >= batch_size or (
            max_tokens is not None and current and (len(current) + 1) * longest > max_tokens
        )
        if full:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches

"""Length-aware batching: sort by length, pad to the batch's longest, cap tokens per batch, restore order;
or (the server) split where padding would cost more than another call."""

from __future__ import annotations

from collections.abc import Sequence

# A session call costs about as much as this many more padded tokens (MiniLM on one thread: a call of 1 x 16
# tokens takes as long as 2.3x its tokens' share of a 32 x 20 call).
CALL_COST_TOKENS = 16


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


def padding_buckets(lengths: Sequence[int], *, max_rows: int, call_cost: int = CALL_COST_TOKENS) -> list[list[int]]:
    """Indices in buckets of at most `max_rows`, longest first, padded to each bucket's longest: the split of
    the length-sorted rows with the fewest padded tokens plus `call_cost` per bucket (exact, n x max_rows steps)."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best = [0] + [-1] * len(order)  # best[j]: least cost of the first j rows of `order`
    cut = [0] * (len(order) + 1)  # where the last bucket of that best split starts
    for end in range(1, len(order) + 1):
        for start in range(max(0, end - max_rows), end):
            cost = best[start] + call_cost + (end - start) * lengths[order[start]]
            if best[end] < 0 or cost < best[end]:
                best[end], cut[end] = cost, start
    buckets: list[list[int]] = []
    end = len(order)
    while end > 0:
        buckets.append(order[cut[end]:end])
        end = cut[end]
    return buckets[::-1]

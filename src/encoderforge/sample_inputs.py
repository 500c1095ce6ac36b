"""Sample inputs (benchmarks, auto's timing, the demo): texts that tokenize to the requested length, and the
graph feeds built from them.

Every engine of a group sees the same inputs: the model-only feeds are the artifact tokenizer's arrays for
texts truncated to exactly `seq_len` tokens (no padding, every row distinct); the end-to-end inputs are those
texts cut at the character where that truncation fell, so tokenizing them again gives ~`seq_len` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.corpus import corpus_lines
from encoderforge.errors import InputError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.tasks import task_head
from encoderforge.tokenization import ArtifactTokenizer

NUM_CHOICES = 2
QUESTION = "Who rebuilt the mill?"
MIN_SEQ_LEN = 8


@dataclass(frozen=True)
class PointInputs:
    """The inputs of one (batch size, sequence length) point."""

    batch_size: int
    seq_len: int
    feed: dict[str, np.ndarray]  # model-only: graph input -> int64 array
    texts: list[Any]  # end-to-end: str, (question, context) or (prompt, [choices]) per row
    e2e_tokens: int  # tokens the end-to-end texts produce (sum over the batch)
    extra: dict[str, Any] = field(default_factory=dict)


def _long_text(offset: int, words: int) -> str:
    lines = corpus_lines()
    out: list[str] = []
    count, i = 0, offset
    while count < words:
        line = lines[i % len(lines)]
        out.append(line)
        count += len(line.split())
        i += 1
    return " ".join(out)


def _cut(text: str, offsets: list[tuple[int, int]], sequence_ids: list[int | None], which: int) -> str:
    ends = [end for (start, end), seq in zip(offsets, sequence_ids) if seq == which and end > start]
    return text[: ends[-1]] if ends else text


def check_limits(artifact: Artifact, batch_sizes: list[int], seq_lens: list[int]) -> None:
    """Reject a batch size or length the artifact cannot take, naming the value, the limit and the fix."""
    limit = artifact.max_length
    for b in batch_sizes:
        if b < 1:
            raise InputError(f"batch size {b} is not positive; pass --batch-sizes with values >= 1")
    for s in seq_lens:
        if s < MIN_SEQ_LEN:
            raise InputError(f"sequence length {s} is below {MIN_SEQ_LEN}; pass --seq-lens with values >= {MIN_SEQ_LEN}")
        if s > limit:
            raise InputError(
                f"sequence length {s} exceeds {artifact.path.name}'s max length {limit}; "
                f"pass --seq-lens with values <= {limit}"
            )
    for spec in artifact.manifest.inputs:
        axes = spec.axes
        fixed_batch = axes[0] if axes and isinstance(axes[0], int) and axes[0] > 0 else None
        if fixed_batch is not None and any(b != fixed_batch for b in batch_sizes):
            raise InputError(
                f"{artifact.path.name}'s input {spec.name!r} has a fixed batch size {fixed_batch}; "
                f"pass --batch-sizes {fixed_batch} or re-export with a dynamic batch axis"
            )
        fixed_seq = axes[-1] if axes and isinstance(axes[-1], int) and axes[-1] > 0 else None
        if fixed_seq is not None and any(s != fixed_seq for s in seq_lens):
            raise InputError(
                f"{artifact.path.name}'s input {spec.name!r} has a fixed sequence length {fixed_seq}; "
                f"pass --seq-lens {fixed_seq}"
            )


def _mask_token(artifact: Artifact, tokenizer: ArtifactTokenizer) -> str | None:
    for token in ("<mask>", "[MASK]"):
        if tokenizer.tokenizer.token_to_id(token) is not None:
            return token
    return None


def build_inputs(artifact: Artifact, tokenizer: ArtifactTokenizer, batch_size: int, seq_len: int) -> PointInputs:
    head = task_head(artifact.task)
    rows = batch_size * (NUM_CHOICES if head.multiple_choice else 1)
    encodings: list[Any] = []
    texts: list[Any] = []
    if head.uses_pairs:
        (probe,) = tokenizer.encode([(QUESTION, "word")], truncation=False)
        if seq_len < len(probe.ids) + 4:
            raise InputError(f"sequence length {seq_len} is too short for {artifact.path.name}'s {head.name} pairs "
                             f"(the question and special tokens take {len(probe.ids) - 1}); pass --seq-lens values "
                             f">= {len(probe.ids) + 4}")
    for row in range(rows):
        body = _long_text(row * 7, seq_len * 2 + 16)
        if head.uses_pairs:
            (enc,) = tokenizer.encode([(QUESTION, body)], max_length=seq_len, truncation="only_second")
            cut = _cut(body, enc.offsets, enc.sequence_ids, 1)
            texts.append((QUESTION, cut))
        else:
            (enc,) = tokenizer.encode([body], max_length=seq_len)
            texts.append(_cut(body, enc.offsets, enc.sequence_ids, 0))
        if len(enc.ids) != seq_len:
            raise InputError(f"cannot build a {seq_len}-token input for {artifact.path.name} (got {len(enc.ids)}); "
                             "choose a longer --seq-lens value")
        encodings.append(enc)
    feed = tokenizer.to_feed(encodings)
    if head.multiple_choice:
        feed = {name: array.reshape(batch_size, NUM_CHOICES, seq_len) for name, array in feed.items()}
        texts = [(texts[i][0], [t[1] for t in texts[i: i + NUM_CHOICES]]) for i in range(0, rows, NUM_CHOICES)]
    if PIPELINES.get(head.name).contract.masked_text:
        mask = _mask_token(artifact, tokenizer)
        if mask is not None:  # one masked word per text, for the end-to-end pipeline
            texts = [_with_mask(text, mask) for text in texts]
    flat = [t for t in texts if isinstance(t, (str, tuple))] if not head.multiple_choice else []
    e2e_tokens = sum(len(e.ids) for e in tokenizer.encode(flat, truncation=True)) if flat else feed_tokens(feed)
    return PointInputs(batch_size, seq_len, feed, texts, e2e_tokens)


def _with_mask(text: Any, mask: str) -> Any:
    words = str(text).split(" ")
    words[len(words) // 2] = mask
    return " ".join(words)


def feed_tokens(feed: dict[str, np.ndarray]) -> int:
    first = next(iter(feed.values()))
    return int(np.prod(first.shape))

"""Validation inputs: real text tokenized by the model's own tokenizer, never random ids.

Cases: a padded batch of unequal lengths, a specials-only input, a single token, and the maximum length
(for the RoBERTa family that exercises position ids up to padding_idx + max_length). Pair heads (QA, MC)
get question/context and prompt/choice pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from encoderforge.corpus import LONG_TEXT, MC_PROMPTS, QA_PAIRS, SENTENCES
from encoderforge.tasks import TaskHead

__all__ = ["LONG_TEXT", "MC_PROMPTS", "QA_PAIRS", "SENTENCES", "Case", "validation_cases"]

@dataclass(frozen=True)
class Case:
    name: str
    feed: dict[str, np.ndarray]


def _encode(tokenizer: Any, first: list[str], second: list[str] | None, **options: Any) -> dict[str, np.ndarray]:
    options.setdefault("padding", True)
    encoded = tokenizer(first, second, return_tensors="np", return_token_type_ids=True, **options)
    return {key: np.asarray(value, dtype=np.int64) for key, value in encoded.items()}


def _select(encoded: dict[str, np.ndarray], input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    ids = encoded["input_ids"]
    feed = {}
    for name in input_names:
        feed[name] = encoded[name] if name in encoded else np.zeros_like(ids)
    return feed


def _pairs_for(head: TaskHead) -> tuple[list[str], list[str]] | None:
    if head.multiple_choice:
        firsts = [prompt for prompt, choices in MC_PROMPTS for _ in choices]
        seconds = [choice for _, choices in MC_PROMPTS for choice in choices]
        return firsts, seconds
    if head.uses_pairs:
        return [q for q, _ in QA_PAIRS], [c for _, c in QA_PAIRS]
    return None


def _as_choices(feed: dict[str, np.ndarray], head: TaskHead) -> dict[str, np.ndarray]:
    if not head.multiple_choice:
        return feed
    num_choices = len(MC_PROMPTS[0][1])
    return {k: v.reshape(-1, num_choices, v.shape[-1]) for k, v in feed.items()}


def validation_cases(
    tokenizer: Any, head: TaskHead, input_names: tuple[str, ...], max_length: int
) -> list[Case]:
    pairs = _pairs_for(head)
    if pairs is None:
        padded = _encode(tokenizer, list(SENTENCES), None)
        longest = _encode(tokenizer, [LONG_TEXT], None, truncation=True, max_length=max_length)
        specials = _encode(tokenizer, [""], None)
    else:
        firsts, seconds = pairs
        padded = _encode(tokenizer, firsts, seconds)
        n = len(firsts)
        longest = _encode(
            tokenizer, firsts, [LONG_TEXT] * n, truncation="only_second", max_length=max_length,
            padding="max_length",
        )
        specials = _encode(tokenizer, [""] * n, [""] * n)
    _check_real_tokens(tokenizer, {"padded-batch": padded, "max-length": longest})
    single = {key: value[:1, :1] for key, value in specials.items()}  # one special token, e.g. [CLS] / <s>
    if pairs is not None:
        single = {key: np.repeat(value, len(pairs[0]), axis=0) for key, value in single.items()}
    cases = [
        Case("padded-batch", padded),
        Case("specials-only", specials),
        Case("length-1", single),
        Case(f"max-length-{max_length}", longest),
    ]
    return [Case(c.name, _as_choices(_select(c.feed, input_names), head)) for c in cases]


def _check_real_tokens(tokenizer: Any, cases: dict[str, dict[str, np.ndarray]]) -> None:
    """Validation text must reach the model as more than special tokens (a tokenizer that maps every word to
    padding, unknown or special ids validates nothing: every input would look the same)."""
    from encoderforge.errors import ModelSourceError

    specials = set(tokenizer.all_special_ids) | {tokenizer.pad_token_id, tokenizer.unk_token_id}
    for name, encoded in cases.items():
        for row, ids in enumerate(encoded["input_ids"]):
            if not set(ids.tolist()) - specials:
                raise ModelSourceError(
                    f"the tokenizer turns validation text ({name}, row {row}) into special tokens only "
                    f"({tokenizer.convert_ids_to_tokens(ids.tolist()[:4])}...): it has no real vocabulary; give "
                    "the checkpoint its tokenizer files (tokenizer.json, or vocab.txt / vocab.json + merges.txt / *.model)"
                )

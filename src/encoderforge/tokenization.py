"""Torch-free tokenization from an artifact's tokenizer.json, producing exactly the graph's declared inputs.

Used by the runtime, calibration and fidelity checks. Batch encoding runs in Rust (`tokenizers`); padding is
to the longest sequence of the batch (never to max length), truncation to the artifact's max length.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from encoderforge.artifact import Artifact
from encoderforge.errors import ArtifactError, InputError

TextInput = str | tuple[str, str]
# The runtime's cap on characters per text (each part of a pair), checked before any tokenization: a
# 10 MB string would otherwise be tokenized whole (seconds, gigabytes) for a result read from its first
# tokens. Raise it per pipeline with load(..., max_chars=N).
MAX_TEXT_CHARS = 1_000_000
_MAX_VARIANTS = 16  # truncation settings kept configured at once (max_length x stride x strategy)


@dataclass
class ArtifactTokenizer:
    tokenizer: Tokenizer
    feeds: dict[str, str]  # graph input -> Encoding field
    max_length: int
    pad_id: int
    special_ids: frozenset[int]
    max_chars: int = MAX_TEXT_CHARS  # per text, checked before tokenization (see check)
    _variants: dict[tuple[int, int, str], Tokenizer] = dataclass_field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = dataclass_field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> ArtifactTokenizer:
        settings = artifact.manifest.tokenizer
        try:
            tokenizer = Tokenizer.from_file(str(artifact.tokenizer_path))
        except Exception as exc:  # tokenizers raises plain Exception for unreadable or malformed files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"cannot read the tokenizer {str(artifact.tokenizer_path)!r}: {first}; "
                                "re-export the artifact") from exc
        tokenizer.no_padding()
        tokenizer.no_truncation()
        pad_id = settings.pad_token_id
        return cls(tokenizer, dict(artifact.manifest.feeds), settings.max_length,
                   0 if pad_id is None else pad_id, frozenset(settings.special_ids))

    def encode(
        self,
        texts: Sequence[TextInput],
        *,
        max_length: int | None = None,
        truncation: bool | str = True,
        stride: int = 0,
    ) -> list[Encoding]:
        """Encode texts or (first, second) pairs. `truncation`: True / "longest_first" / "only_second" / False.
        With stride > 0 and "only_second", overflowing windows are returned as `encoding.overflowing`.
        Safe to call from many threads: the shared tokenizer is never reconfigured (each truncation setting
        has its own configured copy)."""
        limit = min(max_length or self.max_length, self.max_length)
        self.check(texts)
        tokenizer = self._truncating(limit, stride, "longest_first" if truncation is True else str(truncation)) \
            if truncation else self.tokenizer
        try:
            encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # tokenizers raises Exception, or a Rust panic (BaseException) when the
            # stride leaves no room for the second text
            raise InputError(f"cannot tokenize: {exc}; check max_length, stride and the input texts") from exc
        if not truncation:
            too_long = [i for i, e in enumerate(encodings) if len(e.ids) > limit]
            if too_long:
                raise InputError(
                    f"input {too_long[0]} has {len(encodings[too_long[0]].ids)} tokens, more than max length {limit}; "
                    "shorten it or enable truncation"
                )
        return encodings

    def check(self, texts: Sequence[Any]) -> None:
        """Types and the size cap: what encode() checks before tokenizing, for callers that tokenize first."""
        check_texts(texts, max_chars=self.max_chars)

    def _truncating(self, limit: int, stride: int, strategy: str) -> Tokenizer:
        """A copy of the tokenizer with this truncation switched on, made once per setting and then only read
        (switching truncation on the shared tokenizer per call races between threads)."""
        key = (limit, stride, strategy)
        with self._lock:
            tokenizer = self._variants.get(key)
            if tokenizer is None:
                tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
                try:
                    tokenizer.enable_truncation(limit, stride=stride, strategy=strategy)
                except BaseException as exc:
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    raise InputError(f"cannot truncate to {limit} tokens with stride {stride} and strategy "
                                     f"{strategy!r}: {exc}; check max_length, stride and truncation") from exc
                if len(self._variants) >= _MAX_VARIANTS:
                    self._variants.pop(next(iter(self._variants)))
                self._variants[key] = tokenizer
        return tokenizer

    def to_feed(self, encodings: Sequence[Encoding], *, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """Stack encodings into int64 arrays for every graph input, padded to the longest (or `pad_to`)."""
        length = max([len(e.ids) for e in encodings] + [pad_to or 0])
        arrays = {name: np.zeros((len(encodings), length), dtype=np.int64) for name in self.feeds}
        if "input_ids" in arrays:
            arrays["input_ids"].fill(self.pad_id)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            for name, field in self.feeds.items():
                arrays[name][row, :n] = getattr(encoding, field)
        return arrays


def check_texts(texts: Sequence[Any], *, max_chars: int = MAX_TEXT_CHARS) -> None:
    """Reject what cannot be tokenized, or is past the size cap, with a message naming the bad item."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InputError(f"expected a list of texts, got {type(texts).__name__}; wrap a single text in a list")
    for index, item in enumerate(texts):
        parts = item if isinstance(item, tuple) else (item,)
        if len(parts) not in (1, 2) or not all(isinstance(p, str) for p in parts):
            raise InputError(
                f"input {index} is {type(item).__name__} {item!r:.60}; each input must be a str or a (str, str) pair"
            )
        longest = max(len(p) for p in parts)
        if longest > max_chars:
            raise InputError(
                f"input {index} has {longest:,} characters, more than the limit of {max_chars:,} per text; shorten "
                "or split it, or raise the limit with load(..., max_chars=N)"
            )

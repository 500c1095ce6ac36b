"""Torch-free tokenization from an artifact's tokenizer.json, producing exactly the graph's declared inputs.

Used by the runtime, calibration and fidelity checks. Batch encoding runs in Rust (`tokenizers`); padding is
to the longest sequence of the batch (never to max length), truncation to the artifact's max length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from encoderforge.artifact import Artifact
from encoderforge.errors import InputError

TextInput = str | tuple[str, str]


@dataclass
class ArtifactTokenizer:
    tokenizer: Tokenizer
    feeds: dict[str, str]  # graph input -> Encoding field
    max_length: int
    pad_id: int
    special_ids: frozenset[int]

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> ArtifactTokenizer:
        settings = artifact.manifest.tokenizer
        tokenizer = Tokenizer.from_file(str(artifact.tokenizer_path))
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
        With stride > 0 and "only_second", overflowing windows are returned as `encoding.overflowing`."""
        limit = min(max_length or self.max_length, self.max_length)
        check_texts(texts)
        if truncation:
            strategy = "longest_first" if truncation is True else str(truncation)
            self.tokenizer.enable_truncation(limit, stride=stride, strategy=strategy)
        else:
            self.tokenizer.no_truncation()
        try:
            encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # tokenizers raises Exception, or a Rust panic (BaseException) when the
            # stride leaves no room for the second text
            raise InputError(f"cannot tokenize: {exc}; check max_length, stride and the input texts") from exc
        finally:
            self.tokenizer.no_truncation()
        if not truncation:
            too_long = [i for i, e in enumerate(encodings) if len(e.ids) > limit]
            if too_long:
                raise InputError(
                    f"input {too_long[0]} has {len(encodings[too_long[0]].ids)} tokens, more than max length {limit}; "
                    "shorten it or enable truncation"
                )
        return encodings

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


def check_texts(texts: Sequence[Any]) -> None:
    """Reject what cannot be tokenized with a message naming the bad item."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InputError(f"expected a list of texts, got {type(texts).__name__}; wrap a single text in a list")
    for index, item in enumerate(texts):
        parts = item if isinstance(item, tuple) else (item,)
        if len(parts) not in (1, 2) or not all(isinstance(p, str) for p in parts):
            raise InputError(
                f"input {index} is {type(item).__name__} {item!r:.60}; each input must be a str or a (str, str) pair"
            )

"""feature-extraction: per-token hidden states like transformers' pipeline, and sentence embeddings with
`encode()` like sentence-transformers (pooling and normalization from the artifact's 1_Pooling/config.json).

    emb = load("out/minilm")
    emb("a sentence")                       # [[[h_0...], [h_1...], ...]]  (1 x tokens x hidden), like transformers
    emb.encode(["a", "b"], normalize=True)  # numpy (2, d), like SentenceTransformer.encode

Documented results: a text longer than the limit is truncated (to the embedding's max_seq_length for encode(),
to the model's max length for __call__) unless truncation=False, which raises InputError instead. Empty or
whitespace-only text, None and non-str items raise InputError; encode([]) returns an empty (0, d) array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from encoderforge.errors import InputError, UnsupportedError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import Pipeline, TaskContract, one_of, text_batch
from encoderforge.runtime.pooling import POOLING, pool


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"
    contract = TaskContract(request_fields=("text",), rows_batch=True, result="embedding")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        section = self.artifact.manifest.embedding
        self.pooling: str = (section.pooling if section else None) or "mean"
        self.normalize: bool = bool(section and section.normalize)
        limit = section.max_seq_length if section else None
        self.max_seq_length: int = min(limit, self.tokenizer.max_length) if limit else self.tokenizer.max_length
        output = self.artifact.manifest.outputs[0]
        hidden = output.axes[-1]
        self.dimension: int | None = hidden if isinstance(hidden, int) else None
        self._output = output.name

    def __call__(
        self,
        inputs: str | Sequence[str] | None = None,
        *,
        text: str | Sequence[str] | None = None,
        truncation: bool = True,
        return_tensors: bool = False,
        batch_size: int = 32,
    ) -> Any:
        """Per-token hidden states: for one text a nested list (1, tokens, hidden), for a list one such per
        text, as transformers' feature-extraction pipeline; numpy arrays with return_tensors=True."""
        texts, single = text_batch(one_of(inputs, text), name="text")
        encodings = self.tokenizer.encode(texts, truncation=truncation)
        states = [out[self._output][None] for out in self.forward(encodings, batch_size=batch_size)]
        results = states if return_tensors else [s.tolist() for s in states]
        return results[0] if single else results

    def encode(
        self,
        sentences: str | Sequence[str] | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        pooling: str | None = None,
        *,
        truncation: bool = True,
        max_length: int | None = None,
        text: str | Sequence[str] | None = None,
    ) -> np.ndarray:
        """Sentence embeddings, numpy float32 (n, d) (d for a single str), in input order.

        pooling: cls / mean / max; default the artifact's (1_Pooling/config.json), else mean.
        normalize: L2-normalize; default the artifact's (a Normalize module in modules.json), else False.
        Texts are truncated at max_length (default: the embedding's max_seq_length, else the model's max)."""
        sentences = one_of(sentences, text, name="sentences")
        mode = self.pooling if pooling is None else pooling
        if mode not in POOLING:
            raise UnsupportedError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLING)}")
        if isinstance(sentences, (list, tuple)) and len(sentences) == 0:
            return np.zeros((0, self.dimension or 0), dtype=np.float32)
        texts, single = text_batch(sentences, name="sentences")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        encodings = self.tokenizer.encode(texts, truncation=truncation, max_length=max_length or self.max_seq_length)
        outputs = self.forward(encodings, batch_size=batch_size)
        vectors = np.stack([pool(out[self._output], np.ones(out[self._output].shape[:1]), mode)
                            for out in outputs]).astype(np.float32, copy=False)
        if self.normalize if normalize is None else normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors[0] if single else vectors


PIPELINES.register("feature-extraction", FeatureExtractionPipeline)

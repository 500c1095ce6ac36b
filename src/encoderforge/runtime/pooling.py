"""Sentence-embedding pooling over token states (sentence-transformers' cls / mean / max), in one place: the
feature-extraction pipeline's `encode` and the fidelity checks both pool with it.

`hidden` is (..., sequence, dim) and `attention_mask` (..., sequence); padded positions never count.
Computed in float64 (the caller casts).
"""

from __future__ import annotations

import numpy as np

POOLING = ("mean", "cls", "max")


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """Sentence embeddings: mean of the hidden states over real tokens (sentence-transformers' pooling)."""
    mask = attention_mask.astype(np.float64)[..., None]
    pooled = (hidden.astype(np.float64) * mask).sum(axis=-2) / np.maximum(mask.sum(axis=-2), 1e-9)
    if normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    result: np.ndarray = pooled
    return result


def pool(hidden: np.ndarray, attention_mask: np.ndarray, mode: str) -> np.ndarray:
    """cls: the first token's state; max: the largest over real tokens; mean (default): their mean."""
    if mode == "cls":
        cls: np.ndarray = hidden[..., 0, :].astype(np.float64)
        return cls
    if mode == "max":
        masked = np.where(attention_mask[..., None].astype(bool), hidden.astype(np.float64), -np.inf)
        peak: np.ndarray = masked.max(axis=-2)
        return peak
    return mean_pool(hidden, attention_mask, normalize=False)

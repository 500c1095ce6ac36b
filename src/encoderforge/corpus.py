"""The project's texts in one place: the exporter's validation sentences and pairs, and the held-out text
(the synthetic corpus minus those) that fidelity checks, calibration and engine validation run on.

Torch-free and dependency-light (numpy only), so every stage can import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Validation inputs of the exporter (exporters/samples.py builds its cases from them).
SENTENCES = (
    "The museum in Lyon holds a collection of silk weaving looms.",
    "Emmanuel Macron vit à Paris. Crème brûlée 😀 東京!",
    "Yes.",
)
QA_PAIRS = (
    ("Who wrote Moby-Dick?", "Herman Melville wrote Moby-Dick in 1851, after years at sea on whaling ships."),
    ("Où est la gare ?", "Elle est à deux rues d'ici."),
    ("When?", "In the spring of 1824 the river flooded the valley and the mill was rebuilt two years later."),
)
MC_PROMPTS = (
    ("The chef tasted the soup and", ("added salt.", "flew to the moon on a bicycle.", "sang.")),
    ("Water boils at", ("one hundred degrees Celsius at sea level.", "noon.", "the library.")),
)
LONG_TEXT = " ".join(
    "Graph fusion merges attention and layer normalization; quantization keeps activations calibrated. "
    "Le café est très chaud 😅 東京は日本の首都です."
    for _ in range(200)
)

# Choices for multiple-choice feeds (held out from MC_PROMPTS): fidelity, calibration and engine validation.
CHOICES = (
    "and everyone agreed it was a good idea.",
    "but the rain started before noon.",
    "so the meeting moved to the next Tuesday.",
)


CORPUS = Path(__file__).with_name("synthetic") / "corpus.txt"  # the bundled text (tokenizers, inputs, held out)


def corpus_lines() -> list[str]:
    """The non-empty lines of the bundled corpus."""
    return [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def held_out_texts() -> list[str]:
    """Lines of the synthetic corpus minus any exporter validation sentence (the held-out text)."""
    return [line.strip() for line in corpus_lines() if line.strip() not in SENTENCES]


def sentence_corpus(size: int, *, seed: int = 0) -> list[str]:
    """`size` distinct sentences: the held-out lines first, then two- and three-line combinations."""
    lines = held_out_texts()
    texts = list(lines)
    rng = np.random.default_rng(seed)
    seen = set(texts)
    while len(texts) < size:
        k = 2 if rng.random() < 0.7 else 3
        picks = rng.choice(len(lines), size=k, replace=False)
        text = " ".join(lines[i] for i in picks)
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts[:size]

"""Synthetic checkpoints are the same in every process: what a test measures on a tiny model must not change
from one run to the next (tokenizers' WordPiece trainer did: its vocab, hence every BERT / ConvBERT test model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from encoderforge.corpus import corpus_lines
from encoderforge.exporters.families import FAMILIES

pytest.importorskip("transformers", reason="synthetic checkpoints need the export extra (pip install 'encoderforge[export]')")

BUILD = ("import sys; from pathlib import Path; from encoderforge.synthetic import build_checkpoint; "
         "[build_checkpoint(f, 'text-classification', Path(sys.argv[1]) / f) for f in sys.argv[2:]]")


def _fingerprint(directory: Path) -> tuple[list[list[int]], dict[str, np.ndarray]]:
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    return tokenizer(corpus_lines()[:200])["input_ids"], load_file(str(directory / "model.safetensors"))


def test_checkpoints_are_identical_across_processes(tmp_path: Path) -> None:
    families = sorted(FAMILIES)
    for run in ("a", "b"):  # two fresh interpreters: hash-map orders differ between them
        subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / run), *families], check=True, timeout=600)
    for family in families:
        ids_a, weights_a = _fingerprint(tmp_path / "a" / family)
        ids_b, weights_b = _fingerprint(tmp_path / "b" / family)
        assert ids_a == ids_b, f"{family}: the tokenizer differs between processes"
        assert weights_a.keys() == weights_b.keys()
        assert all(np.array_equal(weights_a[k], weights_b[k]) for k in weights_a), f"{family}: weights differ"

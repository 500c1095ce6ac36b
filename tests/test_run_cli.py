"""`encoderforge run`: JSON for one request, JSONL in / JSONL out for a batch, clear errors for bad requests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoderforge.cli import main
from encoderforge.runtime import load


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    status = main(["run", *argv, "--no-progress", "--device", "cpu"])
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip() and status == 0 and "\n" not in out.strip() else out), err


def test_run_text_per_head(capsys: pytest.CaptureFixture[str], artifact: Any) -> None:
    ner = str(artifact("bert", "token-classification").path)
    status, result, _ = run(capsys, ner, "--text", "Emmanuel Macron vit à Paris.", "--aggregation-strategy", "simple",
                            "--ignore-labels", "")
    assert status == 0 and result == json.loads(json.dumps(load(ner)("Emmanuel Macron vit à Paris.",
                                                                      aggregation_strategy="simple", ignore_labels=[])))
    clf = str(artifact("bert", "text-classification").path)
    status, result, _ = run(capsys, clf, "--text", "great film", "--text-pair", "really", "--top-k", "2")
    assert status == 0 and len(result) == 2 and set(result[0]) == {"label", "score"}
    mlm = artifact("bert", "fill-mask")
    status, result, _ = run(capsys, str(mlm.path), "--text", "paris is the [MASK] of france.", "--top-k", "3")
    assert status == 0 and len(result) == 3 and set(result[0]) == {"score", "token", "token_str", "sequence"}
    mc = str(artifact("bert", "multiple-choice").path)
    status, result, _ = run(capsys, mc, "--prompt", "The cat sat on the", "--choice", "mat", "--choice", "moon")
    assert status == 0 and [s["choice"] for s in result["scores"]] == ["mat", "moon"] and "best" in result
    emb = str(artifact("bert", "feature-extraction").path)
    status, result, _ = run(capsys, emb, "--text", "a sentence", "--normalize")
    assert status == 0 and len(result["embedding"]) == 32
    assert abs(np.linalg.norm(result["embedding"]) - 1) < 1e-5
    status, result, _ = run(capsys, emb, "--text", "a sentence", "--per-token")
    assert status == 0 and np.asarray(result).shape[0] == 1


def test_run_jsonl_batch(capsys: pytest.CaptureFixture[str], tmp_path: Path, artifact: Any) -> None:
    clf = artifact("bert", "text-classification").path
    texts = ["a short one", "Crème brûlée 🎉", "東京は日本の首都です。", "a longer sentence " * 10] * 10
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in texts]
    lines.insert(5, json.dumps({"text": "great", "text_pair": "film"}))
    lines.insert(7, json.dumps({"text": ""}))  # a bad line fails alone, with its line number
    lines.insert(9, "not json")
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, _, err = run(capsys, str(clf), "--input", str(source), "--output", str(target), "--top-k", "1",
                         "--batch-size", "8")
    assert status == 1 and "2 failed" in err
    results = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(results) == len(lines)
    assert results[7]["line"] == 8 and "empty" in results[7]["error"]
    assert results[9]["line"] == 10 and "JSON" in results[9]["error"]
    pipe = load(clf)
    expected = pipe([json.loads(line) for i, line in enumerate(lines) if i not in (7, 9)], top_k=1)
    got = [r for i, r in enumerate(results) if i not in (7, 9)]
    assert [[x["label"] for x in r] for r in got] == [[x["label"] for x in r] for r in expected]
    np.testing.assert_allclose([r[0]["score"] for r in got], [r[0]["score"] for r in expected], atol=1e-6)


def test_run_errors(capsys: pytest.CaptureFixture[str], artifact: Any, tmp_path: Path) -> None:
    clf = str(artifact("bert", "text-classification").path)
    for argv, message in [
        ((clf,), "nothing to run"),
        ((clf, "--text", ""), "empty"),
        ((clf, "--text", "x", "--aggregation-strategy", "simple"), "do not apply"),
        ((clf, "--text", "x", "--option", "bogus"), "KEY=VALUE"),
        ((str(tmp_path / "missing"), "--text", "x"), "does not exist"),
        ((clf, "--input", str(tmp_path / "missing.jsonl")), "cannot read"),
        ((clf, "--text", "x", "--input", "y.jsonl"), "not both"),
    ]:
        status, _, err = run(capsys, *argv)
        assert status == 2 and err.startswith("error: ") and message in err, (argv, err)


def test_run_console_script_with_progress(tmp_path: Path, artifact: Any) -> None:
    emb = artifact("bert", "feature-extraction").path
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"text": f"sentence number {i}"}) + "\n" for i in range(50)))
    done = subprocess.run([sys.executable, "-m", "encoderforge.cli", "run", str(emb), "--input", str(source),
                           "--output", str(target), "--device", "cpu"], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "50/50" in done.stderr  # the progress bar (tqdm or the plain fallback)
    vectors = np.array([json.loads(line)["embedding"] for line in target.read_text().splitlines()])
    np.testing.assert_allclose(vectors, load(emb).encode([f"sentence number {i}" for i in range(50)]), atol=1e-5)

"""The export / inspect commands end to end, and their one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from encoderforge.artifact import Artifact
from encoderforge.cli import main


def test_export_then_inspect(checkpoint: Callable[..., Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cam-ner"
    assert main(["export", "--model", str(checkpoint("camembert", "ner")), "--task", "ner",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PASSED" in printed and "max-length-64" in printed
    assert Artifact.load(out).task == "token-classification"

    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "family camembert, task token-classification" in shown
    assert "input_ids: int64[batch, sequence]; attention_mask: int64[batch, sequence]" in shown
    assert "logits: float32[batch, sequence, 9]" in shown and "tokenizer.json" in shown

    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "camembert"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "--model", "{ckpt}", "--task", "summarize", "--output", "{out}"], "unknown task head 'summarize'"),
        (["export", "--model", "{tmp}/missing", "--task", "qa", "--output", "{out}"], "does not exist"),
        (["inspect", "{tmp}/missing"], "does not exist"),
    ],
)
def test_errors_are_one_line_exit_2(argv: list[str], message: str, checkpoint: Callable[..., Path],
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = {"ckpt": str(checkpoint("bert", "cls")), "out": str(tmp_path / "o"), "tmp": str(tmp_path)}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_export_with_precision_writes_the_optimized_artifact(checkpoint: Callable[..., Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bert-cls-int8"
    assert main(["export", "--model", str(checkpoint("bert", "cls")), "--task", "cls", "--output", str(out),
                 "--precision", "int8-dynamic"]) == 0
    manifest = Artifact.load(out).manifest
    assert manifest.precision == "int8-dynamic" and manifest.validation["passed"]
    fidelity = manifest.fidelity  # 2-9 logits per row: judged on pooled SQNR, not per-row cosines
    assert fidelity is not None and fidelity["accuracy_drop"] <= fidelity["bound"]["max_accuracy_drop"]
    assert min(o["pooled_sqnr_db"] for o in fidelity["outputs"].values()) > 28
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert-cls-int8"]  # the fp32 stage is gone
    assert "int8-dynamic" in capsys.readouterr().out
    assert main(["export", "--model", str(checkpoint("bert", "cls")), "--task", "cls",
                 "--output", str(tmp_path / "other"), "--precision", "int4"]) == 2
    assert "int4" in capsys.readouterr().err

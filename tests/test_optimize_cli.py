"""`encoderforge optimize` end to end, and its one-line errors on bad input (exit status 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from encoderforge.artifact import Artifact
from encoderforge.cli import main


@pytest.fixture(scope="module")
def source(artifact: Callable[..., Artifact]) -> Artifact:
    return artifact("roberta", "token-classification")


def test_optimize_int8_dynamic_end_to_end(source: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "int8"
    assert main(["optimize", str(source.path), "--target", "cpu", "--precision", "int8-dynamic",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pass fuse-attention: MultiHeadAttention 2/2" in printed
    assert "pass int8-dynamic" in printed and "min cosine" in printed and "SHORTFALL" not in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8-dynamic"
    fidelity = manifest["fidelity"]  # 2-9 logits per row: judged on pooled SNR, not per-row cosines
    assert fidelity["accuracy_drop"] <= fidelity["bound"]["max_accuracy_drop"]
    assert min(o["pooled_sqnr_db"] for o in fidelity["outputs"].values()) > 28
    Artifact.load(out)
    # the result is an artifact like any other: inspect reads it
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "int8-dynamic"


def test_optimize_fp32_default_target(source: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(source.path), "--precision", "fp32", "--output", str(tmp_path / "fp32")]) == 0
    assert "fp32 for cpu" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--target", "gpu"], "unknown target 'gpu'; choose one of: cpu, cuda, tensorrt"),
    (["--precision", "int4"], "unknown precision 'int4'; choose one of: auto, fp32, fp16, int8-dynamic, int8-static"),
    (["--precision", "fp16"], "not supported"),
    (["--precision", "auto", "--target", "cuda"], "--precision auto measures CPU engines; for --target cuda"),
    (["--auto-seconds", "0"], "auto timing needs seconds > 0"),
    (["--max-accuracy-drop", "2"], "out of range"),
    (["--precision", "int8-static", "--calibration-data", "/nonexistent/calib.txt"], "does not exist"),
])
def test_optimize_bad_options(source: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              args: list[str], message: str) -> None:
    assert main(["optimize", str(source.path), "--output", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_optimize_missing_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_optimize_refuses_existing_output_without_force(source: Artifact, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["optimize", str(source.path), "--output", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["optimize", str(source.path), "--precision", "fp32", "--output", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()


def test_optimize_missed_bound_fails_with_the_fix(source: Artifact, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(source.path), "--precision", "int8-dynamic", "--max-accuracy-drop", "0",
                 "--output", str(tmp_path / "o")]) == 2
    assert "--max-accuracy-drop" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_optimize_refuses_an_already_optimized_artifact(source: Artifact, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(source.path), "--precision", "int8-dynamic", "--output", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["optimize", str(tmp_path / "a"), "--output", str(tmp_path / "b")]) == 2
    assert "already int8-dynamic" in capsys.readouterr().err

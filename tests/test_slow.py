"""Full-size exports (random weights, real architecture). Minutes and GBs: run with `pytest -m slow`."""

from __future__ import annotations

import time
from pathlib import Path

import onnxruntime as ort
import pytest

from encoderforge.exporters import ExportConfig, export
from encoderforge.synthetic import build_checkpoint

pytestmark = pytest.mark.slow


def test_roberta_base_qa_full_size(tmp_path: Path) -> None:
    source = build_checkpoint("roberta", "qa", tmp_path / "src", size="base")
    art = export(ExportConfig(model=str(source), task="qa", output=tmp_path / "art"))
    report = art.manifest.validation
    print(f"roberta-base QA: max abs diff {report['max_abs_diff']:.3g}, export {art.manifest.export_seconds} s")
    assert report["passed"] and report["max_abs_diff"] <= 1e-4 and art.max_length == 512


def test_rembert_full_size_external_data(tmp_path: Path) -> None:
    """RemBERT fp32 is ~2.3 GB: over protobuf's 2 GB limit, so the weights go to model.onnx.data."""
    started = time.perf_counter()
    source = build_checkpoint("rembert", "embed", tmp_path / "src", size="base")
    art = export(ExportConfig(model=str(source), task="embed", output=tmp_path / "art"))
    sizes = {name: f.bytes for name, f in art.manifest.files.items()}
    print(f"rembert: {time.perf_counter() - started:.0f} s, files {sizes}, "
          f"max abs diff {art.manifest.validation['max_abs_diff']:.3g}")
    assert art.manifest.external_data and sizes["model.onnx.data"] > 2**31
    assert art.manifest.validation["passed"]
    ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])

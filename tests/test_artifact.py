"""The artifact contract: sha256 verification, schema checks, and the external-data path for large graphs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from encoderforge.artifact import MANIFEST, Artifact
from encoderforge.errors import ArtifactError
from encoderforge.exporters import ExportConfig, export


@pytest.fixture()
def copy_of(artifact: Callable[..., Artifact], tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(artifact("roberta", "cls").path, target)
    return target


def test_manifest_lists_every_file_with_sha256(artifact: Callable[..., Artifact]) -> None:
    art = artifact("roberta", "cls")
    on_disk = {p.relative_to(art.path).as_posix() for p in art.path.rglob("*") if p.is_file()} - {MANIFEST}
    assert set(art.manifest.files) == on_disk
    assert {"model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json"} <= on_disk
    assert all(len(f.sha256) == 64 for f in art.manifest.files.values())
    versions = art.manifest.versions
    assert {"torch", "transformers", "onnx", "onnxruntime", "encoderforge"} <= set(versions)


def test_tampered_file_is_refused(copy_of: Path) -> None:
    with open(copy_of / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="'model.onnx' .* does not match its sha256"):
        Artifact.load(copy_of)
    Artifact.load(copy_of, verify=False)  # explicit opt-out still reads the manifest


def test_missing_file_manifest_and_schema(copy_of: Path, tmp_path: Path) -> None:
    (copy_of / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match="'tokenizer.json' is missing"):
        Artifact.load(copy_of)
    manifest = json.loads((copy_of / MANIFEST).read_text())
    manifest["schema_version"] = 99
    (copy_of / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="schema version 99"):
        Artifact.load(copy_of)
    (copy_of / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Artifact.load(copy_of)
    (copy_of / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match="not an encoderforge artifact"):
        Artifact.load(copy_of)
    with pytest.raises(ArtifactError, match="does not exist"):
        Artifact.load(tmp_path / "nothing")


def test_external_data_path(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """With the size threshold lowered, a tiny model takes the >2 GB path: weights in model.onnx.data."""
    art = export(ExportConfig(model=str(checkpoint("rembert", "mlm")), task="mlm", output=tmp_path / "ext",
                              external_data_threshold=0))
    assert art.manifest.external_data is True
    assert set(art.manifest.files) >= {"model.onnx", "model.onnx.data"}
    data = (art.path / "model.onnx.data").stat().st_size
    assert data > (art.path / "model.onnx").stat().st_size  # the weights really moved out
    graph = onnx.load(str(art.model_path), load_external_data=False)
    external = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external, "initializers should reference model.onnx.data"
    assert art.manifest.validation["passed"]
    session = ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])
    ids = np.array([[2, 10, 11, 3]], dtype=np.int64)
    logits = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                "token_type_ids": np.zeros_like(ids)})[0]
    assert logits.shape[:2] == (1, 4) and np.isfinite(logits).all()

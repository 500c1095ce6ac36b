"""The typed manifest: every malformed field is one ArtifactError naming it; round trips; version-1 artifacts."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from encoderforge.artifact import MANIFEST, Artifact
from encoderforge.errors import ArtifactError
from encoderforge.manifest import SCHEMA_VERSION, Manifest, Precision, Target


def minimal() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "family": "bert", "task": "text-classification",
            "model_file": "model.onnx", "inputs": [{"name": "input_ids", "dtype": "int64", "axes": ["batch", "sequence"]}],
            "outputs": [{"name": "logits", "dtype": "float32", "axes": ["batch", 2]}],
            "feeds": {"input_ids": "ids"}, "tokenizer": {"file": "tokenizer.json", "max_length": 128},
            "files": {"model.onnx": {"sha256": "a" * 64, "bytes": 10}}}


def broken(path: str, value: Any) -> dict[str, Any]:
    """minimal() with the field at path ("a/b") set to value (or removed, for value ...)."""
    data = minimal()
    *parents, last = path.split("/")
    target: Any = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is Ellipsis:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(("data", "message"), [
    (None, "manifest.json: the manifest must be an object, got null"),
    ([1, 2], "the manifest must be an object, got list"),
    (broken("files", [{"sha256": "x", "bytes": 1}]),
     "field 'files' must be an object of name -> {sha256, bytes}, got list"),
    (broken("files/model.onnx", {"sha256": "a" * 64}), "field 'files.model.onnx.bytes' is missing"),
    (broken("files/model.onnx", {"sha256": "a" * 64, "bytes": "10"}),
     "field 'files.model.onnx.bytes' must be an integer, got str"),
    (broken("tokenizer/max_length", ...), "field 'tokenizer.max_length' is missing"),
    (broken("tokenizer/max_length", True), "field 'tokenizer.max_length' must be an integer, got bool"),
    (broken("tokenizer", None), "field 'tokenizer' must be an object, got null"),
    (broken("family", ...), "field 'family' is missing"),
    (broken("task", 3), "field 'task' must be a string, got int"),
    (broken("inputs", {"input_ids": 1}), "field 'inputs' must be a list of {name, dtype, axes}, got dict"),
    (broken("inputs", [{"name": "input_ids", "axes": "batch"}]),
     "field 'inputs[0].axes' must be a list of axis names or sizes, got str"),
    (broken("feeds", {"input_ids": 1}), "field 'feeds' must be an object of name -> string, got dict"),
    (broken("precision", "int4"), "field 'precision' is 'int4', not one of fp32, fp16, int8-dynamic, int8-static"),
    (broken("target", "gpu"), "field 'target' is 'gpu', not one of cpu, cuda, tensorrt"),
    (broken("passes", [{"counts": {}}]), "field 'passes[0].name' is missing"),
    (broken("engines", [{"file": "e.plan", "key": []}]), "field 'engines[0].key' must be an object, got list"),
    (broken("validation", "ok"), "field 'validation' must be an object, got str"),
    (broken("backends", "onnxruntime"), "field 'backends' must be a list of strings, got str"),
    (broken("schema_version", 99), "has schema version 99"),
    (broken("schema_version", ...), "field 'schema_version' is missing"),
])
def test_malformed_manifest_is_one_artifact_error_naming_the_field(data: Any, message: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        Manifest.from_json(data)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert "re-export the artifact" in text


def test_round_trip_and_defaults() -> None:
    manifest = Manifest.from_json(minimal())
    assert manifest.precision is Precision.FP32 and manifest.target is None and manifest.engines == ()
    assert manifest.backends == () and manifest.with_past is None and manifest.embedding is None
    assert manifest.files["model.onnx"].bytes == 10 and manifest.input_names == ["input_ids"]
    again = Manifest.from_json(json.loads(json.dumps(manifest.to_json())))
    assert again == manifest
    data = {**minimal(), "precision": "int8-static", "target": "tensorrt", "backends": ["onnxruntime-cpu"]}
    typed = Manifest.from_json(data)
    assert typed.precision is Precision.INT8_STATIC and typed.target is Target.TENSORRT
    assert typed.precision.is_int8 and typed.precision.numeric == "int8" and Precision.FP16.numeric == "fp16"
    assert typed.backends == ("onnxruntime-cpu",)


def test_version_1_manifest_reads(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    """A version-1 artifact (written before the typed manifest) loads, verified, as version 2."""
    target = tmp_path / "v1"
    shutil.copytree(artifact("bert", "cls").path, target)
    current = json.loads((target / MANIFEST).read_text())
    v1 = copy.deepcopy(current)
    v1["schema_version"] = 1
    for key in ("backends", "target", "fidelity", "with_past", "optimized_from", "optimize_seconds"):
        v1.pop(key, None)
    for record in v1["passes"]:
        record.pop("details", None)
    (target / MANIFEST).write_text(json.dumps(v1))
    loaded = Artifact.load(target)
    assert loaded.manifest.schema_version == SCHEMA_VERSION
    assert loaded.manifest.to_json() == {**current, "schema_version": SCHEMA_VERSION}


def test_artifact_load_names_the_file_and_field(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    target = tmp_path / "bad"
    shutil.copytree(artifact("bert", "cls").path, target)
    data = json.loads((target / MANIFEST).read_text())
    data["files"] = list(data["files"])
    (target / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"manifest.json: field 'files' must be an object .* got list"):
        Artifact.load(target)
    (target / MANIFEST).write_text("null")
    with pytest.raises(ArtifactError, match="the manifest must be an object, got null"):
        Artifact.load(target)

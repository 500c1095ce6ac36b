"""Calibration sources (text file, JSONL, iterable), methods, range observation and the fidelity module."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from encoderforge.artifact import Artifact
from encoderforge.calibration import METHODS, calibration_method, feed_reader
from encoderforge.calibration.ranges import observe_ranges
from encoderforge.calibration.sources import calibration_feeds, pad_feeds, read_items
from encoderforge.errors import InputError, UnsupportedError
from encoderforge.fidelity import compare_models, fidelity_feeds, held_out_texts


def test_text_file_source(tmp_path: Path) -> None:
    path = tmp_path / "calib.txt"
    path.write_text("First sentence.\n\n  Second one, with spaces.  \nWho?\tHe did.\nPick\ta\tb\tc\n", encoding="utf-8")
    assert read_items(path) == ["First sentence.", "Second one, with spaces.", ("Who?", "He did."), ("Pick", ["a", "b", "c"])]


def test_jsonl_source(tmp_path: Path) -> None:
    path = tmp_path / "calib.jsonl"
    rows = [{"text": "plain"}, {"text": "q", "text_pair": "c"}, {"question": "who?", "context": "me"},
            {"text": "p", "choices": ["x", "y"]}, {"body": "other field"}]
    path.write_text("\n".join(json.dumps(r) for r in rows[:4]) + "\n", encoding="utf-8")
    assert read_items(path) == ["plain", ("q", "c"), ("who?", "me"), ("p", ["x", "y"])]
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(rows[4]) + "\n", encoding="utf-8")
    assert read_items(other, text_field="body") == ["other field"]


def test_iterable_source() -> None:
    assert read_items(iter(["a", ("b", "c")])) == ["a", ("b", "c")]
    assert read_items(t for t in ["generated"]) == ["generated"]


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ("", ".txt", "holds no texts"),
    ("{not json}\n", ".jsonl", ":1: not valid JSON"),
    ('{"text": "ok"}\n{"body": "x"}\n', ".jsonl", ":2: no 'text' field"),
    ('["a list"]\n', ".jsonl", "expected a JSON object"),
    ('{"text": 3}\n', ".jsonl", "is not a text"),
    ("a\t\tb\n", ".txt", "empty field between tabs"),
])
def test_bad_files(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"calib{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_items(path)


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a file"):
        read_items(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="iterable of texts"):
        read_items(42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="calibration item 1"):
        read_items(["fine", 3])
    with pytest.raises(InputError, match="empty text"):
        read_items(["  "])
    with pytest.raises(InputError, match="holds no texts"):
        read_items([])
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_items(binary)


def test_feeds_follow_the_head(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(held_out_texts()[:10]) + "\n", encoding="utf-8")
    single = artifact("bert", "text-classification")
    feeds = calibration_feeds(single, path, samples=4)
    assert len(feeds) == 4 and set(feeds[0]) == set(single.input_names)
    assert all(f["input_ids"].dtype == np.int64 and f["input_ids"].shape[0] == 1 for f in feeds)
    qa = artifact("roberta", "question-answering")
    feeds = calibration_feeds(qa, path, samples=3)
    sep = [t for t, f in qa.manifest.feeds.items()]
    assert len(feeds) == 3 and sep == qa.input_names
    mc = artifact("bert", "multiple-choice")
    feeds = calibration_feeds(mc, path, samples=4, batch_size=2)
    assert feeds[0]["input_ids"].ndim == 3 and feeds[0]["input_ids"].shape[:2] == (2, 3)
    with pytest.raises(InputError, match=">= 1"):
        calibration_feeds(single, path, samples=0)
    default = calibration_feeds(single, None, samples=8)
    assert len(default) == 8


def test_padding_and_reader(artifact: Callable[..., Artifact]) -> None:
    art = artifact("bert", "text-classification")
    feeds = calibration_feeds(art, ["short", "a much longer sentence with many more tokens in it"], samples=None)
    padded = pad_feeds(feeds, pad_id=0)
    assert len({f["input_ids"].shape for f in padded}) == 1
    assert padded[0]["attention_mask"].sum() == feeds[0]["attention_mask"].sum()
    reader = feed_reader(padded, art.input_names)
    got = [reader.get_next(), reader.get_next(), reader.get_next()]
    assert got[2] is None and set(got[0]) == set(art.input_names)


def test_methods() -> None:
    from onnxruntime.quantization import CalibrationMethod

    assert [calibration_method(m) for m in METHODS] == [
        CalibrationMethod.MinMax, CalibrationMethod.Entropy, CalibrationMethod.Percentile]
    assert calibration_method("MinMax") == CalibrationMethod.MinMax
    with pytest.raises(UnsupportedError, match="choose one of: minmax, entropy, percentile"):
        calibration_method("kl")


def test_observed_ranges_cover_intermediates(artifact: Callable[..., Artifact]) -> None:
    art = artifact("roberta", "token-classification")
    model = onnx.load(str(art.model_path))
    ranges = observe_ranges(model, calibration_feeds(art, None, samples=4))
    layer_norms = [n.output[0] for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert layer_norms and all(name in ranges for name in layer_norms)
    assert all(r.max_abs >= 0 for r in ranges.values())


def test_fidelity_feeds_and_identity(artifact: Callable[..., Artifact]) -> None:
    for family, task, ndim in [("bert", "feature-extraction", 2), ("roberta", "question-answering", 2),
                               ("convbert", "multiple-choice", 3)]:
        art = artifact(family, task)
        feeds = fidelity_feeds(art, count=5)
        assert len(feeds) == 5 and all(f["input_ids"].ndim == ndim for f in feeds)
        assert set(feeds[0]) == set(art.input_names)
        report = compare_models(art.model_path, art.model_path, feeds, artifact=art)
        assert report.max_abs_diff < 1e-6 and report.min_cosine > 0.999999 and report.finite  # no thread-order bits
        assert report.accuracy_drop < 1e-6
        manifest = report.as_manifest()
        json.dumps(manifest)  # JSON-safe (no inf)
        assert manifest["samples"] == 5 and set(manifest["outputs"]) >= set(art.output_names)
    embed = artifact("bert", "feature-extraction")
    report = compare_models(embed.model_path, embed.model_path, fidelity_feeds(embed, count=2), artifact=embed)
    assert report.task_outputs == ("sentence_embedding",) and "sentence_embedding" in report.outputs
    with pytest.raises(InputError, match="no texts"):
        fidelity_feeds(embed, texts=[])

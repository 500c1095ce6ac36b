"""Bad input to export: each is one clear error, and nothing half-written is left on disk."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from encoderforge.errors import (
    ArtifactError,
    ModelSourceError,
    UnknownKeyError,
    UnsupportedError,
    ValidationError,
)
from encoderforge.exporters import ExportConfig, export


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_unknown_model_type_lists_supported(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbert"}))
    with pytest.raises(UnknownKeyError, match=r"unsupported model_type 'distilbert'.*bert, camembert, convbert"):
        export(ExportConfig(model=str(tmp_path), task="qa", output=tmp_path / "out"))


def test_unknown_head_lists_heads(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(UnknownKeyError, match=r"unknown task head 'summarization'.*question-answering \(qa\)"):
        export(ExportConfig(model=str(checkpoint("bert", "qa")), task="summarization", output=tmp_path / "o"))


def test_convbert_has_no_causal_lm(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match=r"'convbert' has no 'text-generation' head; it has: .*fill-mask"):
        export(ExportConfig(model=str(checkpoint("convbert", "cls")), task="causal-lm", output=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_directory_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="has no config.json"):
        export(ExportConfig(model=str(tmp_path / "empty"), task="qa", output=tmp_path / "o"))


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="does not exist"):
        export(ExportConfig(model=str(tmp_path / "nope"), task="qa", output=tmp_path / "o"))


def test_unreachable_hub_names_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError) as info:
        export(ExportConfig(model="no-such-org/no-such-model-xyz", task="qa", output=tmp_path / "o"))
    message = str(info.value)
    assert "\n" not in message and "local model directory" in message and "HF_HUB_OFFLINE" in message


def test_unreadable_weights(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint("roberta", "qa"), broken)
    (broken / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(ModelSourceError, match="cannot read the weights"):
        export(ExportConfig(model=str(broken), task="qa", output=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_trust_remote_code_is_off_by_default() -> None:
    assert ExportConfig(model="m", task="qa", output=Path("o")).trust_remote_code is False


def test_existing_output_refused_then_forced(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "art"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    config = {"model": str(checkpoint("bert", "cls")), "task": "cls", "output": out}
    with pytest.raises(ArtifactError, match="already exists; pass --force"):
        export(ExportConfig(**config))  # type: ignore[arg-type]
    assert (out / "keep.txt").exists()
    art = export(ExportConfig(**config, force=True))  # type: ignore[arg-type]
    assert not (out / "keep.txt").exists() and art.model_path.is_file()
    assert _leftovers(tmp_path) == []


def test_failed_validation_leaves_nothing(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="beyond tolerance"):
        export(ExportConfig(model=str(checkpoint("bert", "cls")), task="cls", output=tmp_path / "o", tolerance=-1.0))
    assert not (tmp_path / "o").exists() and _leftovers(tmp_path) == []


def test_disk_full_is_a_clean_error(
    checkpoint: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full)
    with pytest.raises(ArtifactError, match="No space left on device; free disk space"):
        export(ExportConfig(model=str(checkpoint("bert", "cls")), task="cls", output=tmp_path / "o"))
    assert not (tmp_path / "o").exists() and _leftovers(tmp_path) == []


def test_unwritable_output_is_a_clean_error(checkpoint: Callable[..., Path]) -> None:
    with pytest.raises(ArtifactError, match="cannot write artifact"):
        export(ExportConfig(model=str(checkpoint("bert", "cls")), task="cls", output=Path("/proc/encoderforge/o")))


def test_old_opset_refused(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    from encoderforge.errors import ExportError

    with pytest.raises(ExportError, match="opset 13 is too old"):
        export(ExportConfig(model=str(checkpoint("bert", "cls")), task="cls", output=tmp_path / "o", opset=13))
    assert not (tmp_path / "o").exists()

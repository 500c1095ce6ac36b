"""Shared fixtures: tiny random-weight checkpoints and their exported artifacts, built once per test run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from encoderforge.artifact import Artifact
from encoderforge.exporters.families import FAMILIES

# Every registered (family, head) pair: the test matrix is generated from the registries.
FAMILY_HEADS = [(family, head) for family, spec in FAMILIES.items() for head in spec.heads]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """checkpoint(family, task) -> directory of a tiny random-weight checkpoint (cached per run)."""
    from encoderforge.synthetic import build_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    cache: dict[tuple[str, str], Path] = {}

    def build(family: str, task: str) -> Path:
        key = (family, task)
        if key not in cache:
            cache[key] = build_checkpoint(family, task, root / f"{family}-{task}")
        return cache[key]

    return build


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory, checkpoint: Callable[..., Path]) -> Callable[..., Artifact]:
    """artifact(family, task) -> exported, validated tiny artifact (cached per run)."""
    from encoderforge.exporters import ExportConfig, export

    root = tmp_path_factory.mktemp("artifacts")
    cache: dict[tuple[str, str], Artifact] = {}

    def build(family: str, task: str) -> Artifact:
        key = (family, task)
        if key not in cache:
            cache[key] = export(ExportConfig(model=str(checkpoint(family, task)), task=task,
                                             output=root / f"{family}-{task}"))
        return cache[key]

    return build


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from encoderforge.demo import minilm_path

    return minilm_path()


@pytest.fixture(scope="session")
def minilm_artifact(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Artifact:
    from encoderforge.exporters import ExportConfig, export

    return export(ExportConfig(model=str(minilm_path), task="embed", output=tmp_path_factory.mktemp("mini") / "a"))

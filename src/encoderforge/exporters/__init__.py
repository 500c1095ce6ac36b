"""Exporters: the only package that imports torch and transformers.

`export(ExportConfig(...))` loads the reference model for one (family, task head), traces it to ONNX with
dynamic axes, validates it against PyTorch on real tokenized text and writes the artifact atomically.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import onnx

from encoderforge import __version__
from encoderforge.artifact import Artifact, write_manifest
from encoderforge.errors import ArtifactError
from encoderforge.exporters.onnx_export import DYNAMO_OPSET, MIN_OPSET
from encoderforge.manifest import EmbeddingSettings, Manifest, Precision, TokenizerSettings, WithPast
from encoderforge.onnx_files import EXTERNAL_DATA_THRESHOLD, MODEL_FILE, value_table
from encoderforge.staging import make_parent, output_lock, staging, terminating_cleanly

log = logging.getLogger(__name__)

# Which tokenizers.Encoding field feeds each graph input.
FEEDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


@dataclass(frozen=True, kw_only=True)
class OptimizeSettings:
    target: str = "cpu"  # cpu | cuda | tensorrt
    precision: str | None = None  # auto | fp32 | fp16 | int8-dynamic | int8-static; None: auto on cpu, else fp32
    calibration_data: Path | None = None
    max_accuracy_drop: float | None = None


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    model: str  # hub id or local directory
    task: str  # pipeline name or alias
    output: Path
    exporter: Literal["auto", "torchscript", "dynamo"] = "auto"  # auto: the family's validated choice
    opset: int | None = None  # None: 17 for TorchScript, 18 for dynamo (its native opset)
    tolerance: float | None = None  # None: the family's fp32 default (1e-4)
    force: bool = False
    trust_remote_code: bool = False
    allow_untrained_head: bool = False  # export a head the checkpoint has no weights for (recorded in the manifest)
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
    with_past: bool = False  # text-generation: also write model_with_past.onnx (KV cache in/out)
    # Optional optimization right after export (the same as `encoderforge optimize`): None leaves the plain
    # validated fp32 graph; otherwise the fp32 artifact is optimized into `output` and discarded.
    optimize: OptimizeSettings | None = None

    def __post_init__(self) -> None:
        from encoderforge.errors import UnsupportedError
        from encoderforge.tasks import task_head

        if self.with_past and not task_head(self.task).causal:
            raise UnsupportedError(
                f"with_past (--with-past) applies to text-generation (causal-lm) only, not {self.task!r}; "
                "drop --with-past or use --task causal-lm"
            )


def _versions() -> dict[str, str]:
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    return {
        "encoderforge": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
    }


def _copy_sentence_transformers_config(source: str, stage: Path) -> EmbeddingSettings | None:
    """Keep sentence-transformers' pooling (1_Pooling/config.json) and normalization for embeddings."""
    root = Path(source)
    pooling = root / "1_Pooling" / "config.json"
    if not pooling.is_file():
        return None
    (stage / "1_Pooling").mkdir()
    shutil.copy(pooling, stage / "1_Pooling" / "config.json")
    modules = json.loads((root / "modules.json").read_text()) if (root / "modules.json").is_file() else []
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    st_config = root / "sentence_bert_config.json"
    max_seq_length = json.loads(st_config.read_text()).get("max_seq_length") if st_config.is_file() else None
    settings = json.loads(pooling.read_text())
    mode = next((k[len("pooling_mode_"):] for k, v in settings.items() if k.startswith("pooling_mode_") and v), None)
    mode = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(mode or "", mode)
    return EmbeddingSettings(pooling=mode, normalize=normalize, max_seq_length=max_seq_length,
                             source="1_Pooling/config.json")


def _quiet_progress_bars() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def _export_with_past(ref: Any, stage: Path, config: ExportConfig, tolerance: float, max_length: int) -> WithPast:
    from encoderforge.exporters.with_past import export_with_past

    return export_with_past(
        ref.model, ref.config, ref.tokenizer, ref.family.input_names, stage,
        opset=config.opset or MIN_OPSET,  # the with-past graph is always TorchScript
        tolerance=tolerance, max_length=max_length, external_data_threshold=config.external_data_threshold,
    )


def export(config: ExportConfig) -> Artifact:
    """Export, validate and write one artifact (optimized when `config.optimize` is set); raise an
    EncoderForgeError subclass on any failure. Nothing is left behind on failure."""
    if config.optimize is None:
        return _export_fp32(config)
    from encoderforge.graph_passes import OptimizeConfig, optimize
    from encoderforge.graph_passes.pipelines import check_choice, default_precision

    settings = config.optimize
    check_choice(settings.target, settings.precision or default_precision(settings.target))  # an unknown target / precision fails before the export
    output = Path(config.output).expanduser().absolute()
    if output.exists() and not config.force:  # fail before minutes of export, not after
        raise ArtifactError(f"output {str(output)!r} already exists; pass --force to replace it or choose another path")
    make_parent(output)
    # The lock is held from the start, so a second export to `output` fails now, not after minutes of work.
    with terminating_cleanly(), output_lock(output), \
            tempfile.TemporaryDirectory(prefix=f".{output.name}.fp32-", dir=output.parent) as scratch:
        fp32 = _export_fp32(replace(config, output=Path(scratch) / "fp32", force=False, optimize=None))
        return optimize(OptimizeConfig(
            artifact=fp32.path, output=output, target=settings.target, precision=settings.precision,
            calibration_data=settings.calibration_data, max_accuracy_drop=settings.max_accuracy_drop,
            force=config.force,
        ))


def _export_fp32(config: ExportConfig) -> Artifact:
    from encoderforge.exporters.loading import load_reference
    from encoderforge.exporters.onnx_export import head_module, trace
    from encoderforge.exporters.samples import validation_cases
    from encoderforge.exporters.tokenizer import save_tokenizer
    from encoderforge.exporters.validation import validate

    started = time.perf_counter()
    _quiet_progress_bars()
    ref = load_reference(config.model, config.task, trust_remote_code=config.trust_remote_code,
                         allow_untrained_head=config.allow_untrained_head)
    family, head = ref.family, ref.head
    exporter = family.exporter if config.exporter == "auto" else config.exporter
    tolerance = family.tolerance if config.tolerance is None else config.tolerance
    opset = config.opset or (MIN_OPSET if exporter == "torchscript" else DYNAMO_OPSET)
    max_length = family.max_length(ref.config)
    log.info("exporting %s (%s, %s) with %s", config.model, family.name, head.name, exporter)
    with staging(config.output, force=config.force) as stage:
        tokenizer_section = save_tokenizer(ref.tokenizer, stage, max_length=max_length)
        ref.config.save_pretrained(str(stage))
        embedding = _copy_sentence_transformers_config(ref.source, stage)
        cases = validation_cases(ref.tokenizer, head, family.input_names, max_length)
        files = trace(
            ref.model, head, family.input_names, cases[0].feed, stage, exporter=exporter, opset=opset,
            external_data_threshold=config.external_data_threshold,
        )
        ref.model.eval()
        report = validate(
            head_module(ref.model, head, family.input_names), stage / MODEL_FILE, head, family.input_names,
            cases, tolerance=tolerance,
        )
        graph = onnx.load(str(stage / MODEL_FILE), load_external_data=False)
        with_past = _export_with_past(ref, stage, config, tolerance, max_length) if config.with_past else None
        manifest = Manifest(
            family=family.name,
            model_type=ref.config.model_type,
            task=head.name,
            source=config.model,
            model_file=MODEL_FILE,
            external_data=len(files) > 1,
            inputs=value_table(graph.graph.input),
            outputs=value_table(graph.graph.output),
            feeds={name: FEEDS[name] for name in family.input_names},
            padding_sensitive=family.padding_sensitive,
            tokenizer=TokenizerSettings.from_json(tokenizer_section, where="tokenizer"),
            embedding=embedding,
            precision=Precision.FP32,
            exporter=exporter,
            opset=opset,
            validation=report,
            versions=_versions(),
            with_past=with_past,
            export_seconds=round(time.perf_counter() - started, 2),
            untrained_weights=ref.untrained,  # only with allow_untrained_head: the answers are noise, say so
        )
        write_manifest(stage, manifest)
    return Artifact.load(config.output)

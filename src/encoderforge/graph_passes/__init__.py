"""Graph passes and the `optimize` API: artifact in, new artifact out (fused, fp16 or int8).

    optimize(OptimizeConfig(artifact="out/roberta", output="out/roberta-int8", precision="int8-dynamic"))

loads the source artifact, runs the pipeline for (target, precision) (see `pipelines`), checks the result
against the fp32 source on held-out text (`encoderforge.fidelity`) and writes a new artifact atomically:
same tokenizer and config files, the new model.onnx, and a manifest whose `precision`, `passes` (each pass's
counts, expected counts and shortfalls) and `fidelity` (max abs diff, argmax agreement, min cosine, median
SQNR) describe what was done. A result whose accuracy drop (1 - min cosine) exceeds the bound fails unless
the bound is relaxed explicitly with `max_accuracy_drop`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from encoderforge.artifact import MANIFEST, Artifact, write_manifest
from encoderforge.errors import ArtifactError, InputError, ValidationError
from encoderforge.graph_passes.base import PASSES, GraphPass, PassContext, PassResult
from encoderforge.graph_passes.options import check_keys
from encoderforge.graph_passes.pipelines import PASS_PIPELINES, PRECISIONS, TARGETS, pipeline, resolve
from encoderforge.manifest import OptimizedFrom, Precision, Target
from encoderforge.onnx_files import DATA_FILE, MODEL_FILE, needs_external_data, save_graph, value_table
from encoderforge.runtime.backends.compat import engines_for
from encoderforge.staging import staging

__all__ = [
    "DEFAULT_MAX_DROP",
    "PASSES",
    "PASS_PIPELINES",
    "PRECISIONS",
    "TARGETS",
    "GraphPass",
    "OptimizeConfig",
    "PassContext",
    "PassResult",
    "optimize",
    "pipeline",
    "resolve",
]

log = logging.getLogger(__name__)

# Default bound on 1 - min cosine (vs the fp32 source, held-out text) per precision; relax with max_accuracy_drop.
DEFAULT_MAX_DROP: dict[str, float] = {Precision.FP32.value: 1e-4, Precision.FP16.value: 1e-3,
                                      Precision.INT8_DYNAMIC.value: 1e-2, Precision.INT8_STATIC.value: 1e-2}


@dataclass(frozen=True, kw_only=True)
class OptimizeConfig:
    artifact: Path | str  # source artifact directory (written by `encoderforge export`)
    output: Path | str  # new artifact directory
    target: str = "cpu"  # cpu | cuda | tensorrt
    precision: str = "fp32"  # fp32 | fp16 | int8-dynamic | int8-static
    calibration_data: Path | str | None = None  # int8-static / fp16 islands: text file or JSONL; None: built-in text
    calibration_method: str = "minmax"  # minmax | entropy | percentile
    calibration_samples: int | None = None  # None: the pass's default
    max_accuracy_drop: float | None = None  # bound on 1 - min cosine; None: DEFAULT_MAX_DROP[precision]
    fidelity_samples: int = 20  # held-out feeds compared against the fp32 source
    force: bool = False  # replace an existing output
    passes: tuple[str, ...] | None = None  # override the pipeline (expert use, tests)
    options: Mapping[str, Any] = field(default_factory=dict)  # extra pass options (options.py: per_channel, ...)


def _check(config: OptimizeConfig) -> tuple[str, ...]:
    names = tuple(config.passes) if config.passes is not None else pipeline(config.target, config.precision)
    if config.passes is not None:
        pipeline(config.target, config.precision)  # still validate target / precision
    check_keys(config.options, names, where=f"--target {config.target} --precision {config.precision} "
                                            f"({', '.join(names) or 'no passes'})")
    if config.max_accuracy_drop is not None and not 0 <= config.max_accuracy_drop <= 1:
        raise InputError(f"max accuracy drop {config.max_accuracy_drop!r} is out of range; pass a value in [0, 1], "
                         "e.g. 0.01")
    if config.calibration_data is not None and not Path(config.calibration_data).expanduser().is_file():
        what = "is a directory" if Path(config.calibration_data).expanduser().is_dir() else "does not exist"
        raise InputError(f"calibration data {str(config.calibration_data)!r} {what}; pass a text or JSONL file")
    samples = config.calibration_samples
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise InputError(f"calibration samples {samples!r} must be an int >= 1 (leave it out for the pass's default)")
    output = Path(config.output).expanduser().absolute()
    if output.exists() and not config.force:
        raise ArtifactError(f"output {str(output)!r} already exists; pass --force to replace it or choose another path")
    if output == Path(config.artifact).expanduser().absolute():
        raise InputError("--output is the source artifact; write the optimized artifact to another directory")
    return names


def optimize(config: OptimizeConfig) -> Artifact:
    """Run the (target, precision) pipeline on an artifact and write the result as a new artifact."""
    names = _check(config)
    passes = [resolve(name) for name in names]  # unknown pass names fail here, before any work
    source = Artifact.load(config.artifact)
    if source.manifest.precision is not Precision.FP32:
        raise InputError(f"artifact {str(source.path)!r} is already {source.manifest.precision}; optimize the "
                         "fp32 artifact written by `encoderforge export`")
    started = time.perf_counter()
    options = {
        "calibration_data": None if config.calibration_data is None else str(config.calibration_data),
        "calibration_method": config.calibration_method,
        "max_accuracy_drop": config.max_accuracy_drop,
        "calibration_samples": config.calibration_samples,
        **dict(config.options),
    }
    with tempfile.TemporaryDirectory(prefix="encoderforge-optimize-") as scratch:
        context = PassContext(artifact=source, target=config.target, workdir=Path(scratch), options=options)
        model = onnx.load(str(source.model_path), load_external_data=True)
        results: list[PassResult] = []
        for graph_pass in passes:
            log.info("pass %s", graph_pass.name)
            model, result = graph_pass.apply(model, context)
            results.append(result)
            for op, (expected, achieved) in result.shortfalls().items():
                log.warning("%s: %s fused %d of %d expected", result.name, op, achieved, expected)
        fidelity = _fidelity(source, model, config, Path(scratch))
        bound = DEFAULT_MAX_DROP[Precision(config.precision).value] if config.max_accuracy_drop is None else config.max_accuracy_drop
        drop = float(fidelity["accuracy_drop"])
        if not drop <= bound:
            relax = "relax it with --max-accuracy-drop" if config.max_accuracy_drop is None else "raise --max-accuracy-drop"
            raise ValidationError(
                f"{config.precision} graph misses the fidelity bound: accuracy drop (1 - min cosine vs fp32 on "
                f"{fidelity['samples']} held-out inputs) is {drop:.3g} > {bound:g}; {relax} if that is acceptable, "
                "or try another --precision / calibration"
            )
        fidelity["bound"] = {"max_accuracy_drop": bound, "explicit": config.max_accuracy_drop is not None}
        return _write(source, model, config, results, fidelity, time.perf_counter() - started)


def _fidelity(source: Artifact, model: onnx.ModelProto, config: OptimizeConfig, scratch: Path) -> dict[str, Any]:
    from encoderforge.fidelity import compare_models, fidelity_feeds

    feeds = fidelity_feeds(source, count=config.fidelity_samples)
    candidate: onnx.ModelProto | Path = model
    if needs_external_data(model):
        candidate = scratch / "candidate.onnx"
        save_graph(model, scratch, name=candidate.name)
    report = compare_models(source.model_path, candidate, feeds, artifact=source)  # embeddings: pooled
    return {**report.as_manifest(), "reference": "fp32 source artifact, onnxruntime CPU"}


def _write(source: Artifact, model: onnx.ModelProto, config: OptimizeConfig, results: list[PassResult],
           fidelity: dict[str, Any], seconds: float) -> Artifact:
    model_file = source.manifest.model_file
    skip = {MANIFEST, model_file, DATA_FILE}
    with staging(Path(config.output), force=config.force) as stage:
        for name in source.manifest.files:
            if name in skip or name.startswith(model_file):
                continue
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.path / name, target)
        external = len(save_graph(model, stage)) > 1
        shortfalls = {f"{r.name}:{op}": {"expected": e, "achieved": a}
                      for r in results for op, (e, a) in r.shortfalls().items()}
        manifest = replace(
            source.manifest,
            model_file=MODEL_FILE,
            external_data=external,
            inputs=value_table(model.graph.input),
            outputs=value_table(model.graph.output),
            precision=Precision(config.precision),
            target=Target(config.target),
            backends=tuple(engines_for(model)),  # the backends that can load this graph (compat.py)
            passes=(*source.manifest.passes, *(r.record() for r in results)),
            fusion_shortfalls=shortfalls,
            fidelity=fidelity,
            optimized_from=OptimizedFrom(str(source.path.absolute()), source.manifest.files[model_file].sha256),
            optimize_seconds=round(seconds, 2),
        )
        write_manifest(stage, manifest)
    return Artifact.load(config.output)

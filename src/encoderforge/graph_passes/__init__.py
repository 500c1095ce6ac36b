"""Graph passes and the `optimize` API: artifact in, new artifact out (fused, fp16 or int8).

    optimize(OptimizeConfig(artifact="out/roberta", output="out/roberta-int8", precision="int8-dynamic"))

loads the source artifact, runs the pipeline for (target, precision) (see `pipelines`), checks the result
against the fp32 source on held-out text (`encoderforge.fidelity`) and writes a new artifact atomically:
same tokenizer and config files, the new model.onnx, and a manifest whose `precision`, `passes` (each pass's
counts, expected counts and shortfalls) and `fidelity` (max abs diff, argmax agreement, min cosine, median
SQNR) describe what was done. A result whose accuracy drop (1 - min cosine) exceeds the bound fails unless
the bound is relaxed explicitly with `max_accuracy_drop`.

`precision="auto"` (the default on cpu) builds several graphs instead, runs each on every installed CPU engine
that can, and keeps the fastest within the bound (`auto.py`); the manifest's `selection` records the table and
the backend `load()` then uses.
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
from encoderforge.graph_passes.auto import AutoOptions
from encoderforge.graph_passes.base import PASSES, GraphPass, PassContext, PassResult
from encoderforge.graph_passes.options import check_keys
from encoderforge.graph_passes.pipelines import (
    PASS_PIPELINES,
    PRECISIONS,
    TARGETS,
    check_choice,
    default_precision,
    pipeline,
    resolve,
)
from encoderforge.manifest import OptimizedFrom, Precision, Selection, Target
from encoderforge.onnx_files import DATA_FILE, MODEL_FILE, needs_external_data, save_graph, value_table
from encoderforge.runtime.backends.compat import engines_for
from encoderforge.staging import staging

__all__ = [
    "AUTO",
    "DEFAULT_MAX_DROP",
    "PASSES",
    "PASS_PIPELINES",
    "PRECISIONS",
    "TARGETS",
    "AutoOptions",
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
# auto: 5e-3, i.e. min cosine >= 0.995 for its choice.
AUTO = "auto"
DEFAULT_MAX_DROP: dict[str, float] = {Precision.FP32.value: 1e-4, Precision.FP16.value: 1e-3,
                                      Precision.INT8_DYNAMIC.value: 1e-2, Precision.INT8_STATIC.value: 1e-2,
                                      AUTO: 5e-3}


@dataclass(frozen=True, kw_only=True)
class OptimizeConfig:
    artifact: Path | str  # source artifact directory (written by `encoderforge export`)
    output: Path | str  # new artifact directory
    target: str = "cpu"  # cpu | cuda | tensorrt
    precision: str | None = None  # auto | fp32 | fp16 | int8-dynamic | int8-static; None: auto on cpu, else fp32
    calibration_data: Path | str | None = None  # int8-static / fp16 islands: text file or JSONL; None: built-in text
    calibration_method: str = "minmax"  # minmax | entropy | percentile
    calibration_samples: int | None = None  # None: the pass's default
    max_accuracy_drop: float | None = None  # bound on 1 - min cosine; None: DEFAULT_MAX_DROP[precision]
    fidelity_samples: int = 20  # held-out feeds compared against the fp32 source
    force: bool = False  # replace an existing output
    passes: tuple[str, ...] | None = None  # override the pipeline (expert use, tests)
    options: Mapping[str, Any] = field(default_factory=dict)  # extra pass options (options.py: per_channel, ...)
    auto: AutoOptions = field(default_factory=AutoOptions)  # how --precision auto measures its candidates


def precision_of(config: OptimizeConfig) -> str:
    """The precision asked for: `auto` on cpu and fp32 elsewhere when the config leaves it out."""
    return default_precision(config.target) if config.precision is None else config.precision


def _check(config: OptimizeConfig) -> tuple[str, ...]:
    precision = precision_of(config)
    names = check_choice(config.target, precision)  # validates target / precision
    if config.passes is not None:
        if precision == AUTO:
            raise InputError("passes= overrides one pipeline; --precision auto builds several: choose a precision")
        names = tuple(config.passes)
    check_keys(config.options, names, where=f"--target {config.target} --precision {precision} "
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
    """Run the (target, precision) pipeline on an artifact and write the result as a new artifact
    (`auto`: build, measure and choose among the CPU candidates, see `auto`)."""
    names = _check(config)
    passes = [resolve(name) for name in names]  # unknown pass names fail here, before any work
    source = Artifact.load(config.artifact)
    if source.manifest.precision is not Precision.FP32:
        raise InputError(f"artifact {str(source.path)!r} is already {source.manifest.precision}; optimize the "
                         "fp32 artifact written by `encoderforge export`")
    started = time.perf_counter()
    if precision_of(config) == AUTO:
        from encoderforge.graph_passes.auto import optimize_auto

        return optimize_auto(source, config, started)
    with tempfile.TemporaryDirectory(prefix="encoderforge-optimize-") as scratch:
        model, results = run_passes(source, passes, config, Path(scratch))
        fidelity = _fidelity(source, model, config, Path(scratch))
        bound = bound_for(config, precision_of(config))
        check_bound(fidelity, bound, config)
        fidelity["bound"] = {"max_accuracy_drop": bound, "explicit": config.max_accuracy_drop is not None}
        return write_artifact(source, model, config, results, fidelity, time.perf_counter() - started)


def pass_options(config: OptimizeConfig) -> dict[str, Any]:
    return {
        "calibration_data": None if config.calibration_data is None else str(config.calibration_data),
        "calibration_method": config.calibration_method,
        "max_accuracy_drop": config.max_accuracy_drop,
        "calibration_samples": config.calibration_samples,
        **dict(config.options),
    }


def run_passes(source: Artifact, passes: list[GraphPass], config: OptimizeConfig, scratch: Path, *,
               start: onnx.ModelProto | None = None) -> tuple[onnx.ModelProto, list[PassResult]]:
    """The source graph (or `start`, a graph already built from it) through `passes`, in order, with every
    shortfall logged."""
    context = PassContext(artifact=source, target=config.target, workdir=scratch, options=pass_options(config))
    model = start if start is not None else onnx.load(str(source.model_path), load_external_data=True)
    results: list[PassResult] = []
    for graph_pass in passes:
        log.info("pass %s", graph_pass.name)
        model, result = graph_pass.apply(model, context)
        results.append(result)
        for op, (expected, achieved) in result.shortfalls().items():
            log.warning("%s: %s fused %d of %d expected", result.name, op, achieved, expected)
    return model, results


def bound_for(config: OptimizeConfig, precision: str) -> float:
    return DEFAULT_MAX_DROP[precision] if config.max_accuracy_drop is None else config.max_accuracy_drop


def check_bound(fidelity: Mapping[str, Any], bound: float, config: OptimizeConfig) -> None:
    drop = float(fidelity["accuracy_drop"])
    if not drop <= bound:
        relax = "relax it with --max-accuracy-drop" if config.max_accuracy_drop is None else "raise --max-accuracy-drop"
        raise ValidationError(
            f"{precision_of(config)} graph misses the fidelity bound: accuracy drop (1 - min cosine vs fp32 on "
            f"{fidelity['samples']} held-out inputs) is {drop:.3g} > {bound:g}; {relax} if that is acceptable, "
            "or try another --precision / calibration"
        )


def _fidelity(source: Artifact, model: onnx.ModelProto, config: OptimizeConfig, scratch: Path) -> dict[str, Any]:
    from encoderforge.fidelity import compare_models, fidelity_feeds

    feeds = fidelity_feeds(source, count=config.fidelity_samples)
    candidate: onnx.ModelProto | Path = model
    if needs_external_data(model):
        candidate = scratch / "candidate.onnx"
        save_graph(model, scratch, name=candidate.name)
    from encoderforge.graph_passes.quantize_static import validation_optimization

    level = validation_optimization(config.target) if precision_of(config) == Precision.INT8_STATIC.value else "all"
    report = compare_models(source.model_path, candidate, feeds, artifact=source,  # embeddings: pooled
                            optimization=level)
    how = "" if level == "all" else f"; candidate with Q/DQ simulated (unfused), as {config.target} computes it"
    return {**report.as_manifest(), "reference": f"fp32 source artifact, onnxruntime CPU{how}"}


def write_artifact(source: Artifact, model: onnx.ModelProto, config: OptimizeConfig, results: list[PassResult],
                   fidelity: dict[str, Any], seconds: float, *, output: Path | None = None,
                   precision: str | None = None, selection: Selection | None = None,
                   force: bool | None = None) -> Artifact:
    """`model` as a new artifact at `output` (default: the config's), atomically; its manifest records the
    passes, fidelity and (auto) selection."""
    model_file = source.manifest.model_file
    skip = {MANIFEST, model_file, DATA_FILE}
    output = Path(config.output) if output is None else output
    with staging(output, force=config.force if force is None else force) as stage:
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
            precision=Precision(precision or precision_of(config)),
            target=Target(config.target),
            backends=tuple(engines_for(model)),  # the backends that can load this graph (compat.py)
            passes=(*source.manifest.passes, *(r.record() for r in results)),
            fusion_shortfalls=shortfalls,
            fidelity=fidelity,
            optimized_from=OptimizedFrom(str(source.path.absolute()), source.manifest.files[model_file].sha256),
            optimize_seconds=round(seconds, 2),
            selection=selection,
        )
        write_manifest(stage, manifest)
    return Artifact.load(output)

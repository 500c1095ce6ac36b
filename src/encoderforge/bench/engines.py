"""Engines: what a benchmark runs. Ours (an artifact through encoderforge's runtime) and the peers, each a
small class with `load()`, and for a prepared point a zero-argument `call` for model-only or end-to-end timing.

An engine that cannot run here raises `Skip` with the reason; the sweep prints it and goes on.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.errors import EncoderForgeError
from encoderforge.manifest import Precision
from encoderforge.sample_inputs import PointInputs

Mode = Literal["model", "e2e"]
Call = Callable[[], object]
Feed = dict[str, np.ndarray]


class Skip(Exception):
    """This engine, or this mode of it, cannot run here; the message says why and how to enable it."""


@dataclass(frozen=True)
class Group:
    """The artifacts that share a source checkpoint and task; peers are measured once per group."""

    name: str
    key: str  # stable id of (source, task) for cached baseline exports
    task: str
    source: Path | None  # the checkpoint directory the artifacts were exported from, when it still exists
    artifacts: tuple[Artifact, ...]


@dataclass
class Engine:
    name: str
    role: Literal["ours", "peer"]
    group: Group
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def record_key(self) -> str:
        """How the sweep keys this engine's record: its name within its group."""
        return f"{self.name}@{self.group.key}"

    def prepare(self) -> None:
        """One-off work a user does once, before loading (an export, a quantization): not timed."""

    def load(self, threads: int) -> None:
        raise NotImplementedError

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        raise NotImplementedError

    def outputs(self, feed: Feed) -> dict[str, np.ndarray]:
        """Model-only outputs on one feed (graph output name -> array), for the fidelity check."""
        raise Skip(f"{self.name} gives no model-only outputs")

    def close(self) -> None:
        pass


def is_int8(artifact: Artifact) -> bool:
    return artifact.manifest.precision.is_int8


def run_pipeline(pipeline: Any, inputs: PointInputs) -> Call:
    """Call an encoderforge pipeline the way users do (as its task contract says): the batch of texts, with
    the point's batch size. Embeddings go through `encode` (sentence embeddings, as sentence-transformers
    returns them)."""
    contract, texts, batch = pipeline.contract, inputs.texts, inputs.batch_size
    if contract.result == "embedding":
        return lambda: pipeline.encode(texts, batch_size=batch)
    kwargs = {"batch_size": batch} if "batch_size" in inspect.signature(pipeline.__call__).parameters else {}
    args, fields = contract.many(texts)
    options = {**fields, **contract.bench_options, **kwargs}
    return lambda: pipeline(*args, **options)


def session_or_pipeline_call(session: Any, pipeline: Any, mode: Mode, inputs: PointInputs) -> Call:
    """Model-only: the session on the point's feed; end to end: the pipeline on its texts."""
    if mode == "model":
        feed = inputs.feed
        return lambda: session.run(feed)
    if pipeline is None:
        raise Skip("pipeline not loaded")
    return run_pipeline(pipeline, inputs)


def plain_export(group: Group, workdir: Path) -> Artifact | None:
    """The group's plain fp32 export where one already exists: an artifact without passes, the export an
    `optimize` run recorded it started from, or an earlier baseline export cached in `workdir`."""
    for artifact in group.artifacts:
        if not artifact.manifest.passes and artifact.manifest.precision is Precision.FP32:
            return artifact
    for artifact in group.artifacts:  # `optimize` records the fp32 export it started from
        origin = artifact.manifest.optimized_from
        if origin is not None and origin.path and (Path(origin.path) / "manifest.json").is_file():
            plain = Artifact.load(origin.path, verify=False)
            if not plain.manifest.passes and plain.manifest.precision is Precision.FP32:
                return plain
    target = workdir / f"{group.key}-export"
    if (target / "manifest.json").is_file():
        return Artifact.load(target, verify=False)
    return None


def standard_export(group: Group, workdir: Path) -> Artifact:
    """The group's plain export (`plain_export`), else a fresh export of the source cached in `workdir`: what
    every baseline peer (plain onnxruntime, OpenVINO, nncf) starts from."""
    found = plain_export(group, workdir)
    if found is not None:
        return found
    if group.source is None:
        raise Skip("needs the source checkpoint for a standard export, and the manifest's source is not a "
                   "directory here; pass an fp32 artifact without passes alongside")
    try:
        from encoderforge.exporters import ExportConfig, export
    except ImportError as exc:
        raise Skip(f"exporting the baseline needs the export extra ({exc}); pip install 'encoderforge[export]'")
    try:
        return export(ExportConfig(model=str(group.source), task=group.task, output=workdir / f"{group.key}-export"))
    except (ImportError, EncoderForgeError) as exc:
        raise Skip(f"standard export of {group.source} failed: {exc}") from exc


def session_outputs(session: Any, feed: Feed) -> dict[str, np.ndarray]:
    if session is None:
        raise Skip("session not loaded")
    return dict(session.run(feed))


class EncoderForgeEngine(Engine):
    """An artifact through encoderforge.load (onnxruntime CPU): graph only, or text in -> answer out."""

    def __init__(self, artifact: Artifact, group: Group) -> None:
        precision = artifact.manifest.precision.value
        passes = [p.name for p in artifact.manifest.passes]
        super().__init__(artifact.path.name, "ours", group,
                         f"encoderforge {precision} ({', '.join(passes) or 'no passes'})",
                         {"precision": precision, "passes": passes})
        self.artifact = artifact
        self.pipeline: Any = None
        self.session: Any = None

    def load(self, threads: int) -> None:
        from encoderforge.runtime import load

        self.pipeline = load(self.artifact.path, device="cpu", verify=False, intra_op_threads=threads)
        self.session = self.pipeline.session

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        return session_or_pipeline_call(self.session, self.pipeline, mode, inputs)

    def outputs(self, feed: Feed) -> dict[str, np.ndarray]:
        return session_outputs(self.session, feed)

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
        elif self.session is not None:
            self.session.close()
        self.pipeline = self.session = None


class OrtBaselineEngine(Engine):
    """What a user gets without encoderforge: the standard torch.onnx export in a plain onnxruntime session
    (default options, same thread count), quantized with onnxruntime's own `quantize_dynamic` for int8."""

    def __init__(self, group: Group, *, int8: bool, workdir: Path) -> None:
        kind = "int8" if int8 else "fp32"
        how = "standard export + onnxruntime quantize_dynamic" if int8 else "standard export"
        super().__init__(f"ort-baseline-{kind}", "peer", group, f"plain onnxruntime session ({how})",
                         {"precision": "int8-dynamic" if int8 else "fp32"})
        self.int8 = int8
        self.workdir = workdir
        self.session: Any = None
        self.pipeline: Any = None

    def _model_file(self) -> tuple[Artifact, Path]:
        plain = standard_export(self.group, self.workdir)
        if not self.int8:
            return plain, plain.model_path
        from onnxruntime.quantization import quantize_dynamic

        out = self.workdir / f"{self.group.key}-ort-int8.onnx"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            quantize_dynamic(plain.model_path, out, use_external_data_format=plain.manifest.external_data)
        return plain, out

    def prepare(self) -> None:
        self._prepared = self._model_file()

    def load(self, threads: int) -> None:
        import onnxruntime as ort

        from encoderforge.runtime.backends.onnxruntime import OrtOptions, OrtSession
        from encoderforge.runtime.pipelines import PIPELINES

        plain, path = getattr(self, "_prepared", None) or self._model_file()
        options = OrtOptions(intra_op_threads=threads).session_options()
        raw = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.session = OrtSession(raw, self.name, io_binding=False)
        self.info["model_file"] = str(path)
        self.pipeline = PIPELINES.get(plain.task)(self.group.artifacts[0], self.session)
        self.description += "; end-to-end inside encoderforge's pipeline (same tokenization and post-processing)"

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        return session_or_pipeline_call(self.session, self.pipeline, mode, inputs)

    def outputs(self, feed: Feed) -> dict[str, np.ndarray]:
        return session_outputs(self.session, feed)

    def close(self) -> None:
        self.session = self.pipeline = None


def default_workdir() -> Path:
    root = Path(os.environ.get("ENCODERFORGE_BENCH_CACHE", tempfile.gettempdir())) / "encoderforge-bench"
    root.mkdir(parents=True, exist_ok=True)
    return root

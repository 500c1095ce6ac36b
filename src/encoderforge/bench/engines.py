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

from encoderforge.artifact import Artifact
from encoderforge.bench.inputs import PointInputs
from encoderforge.errors import EncoderForgeError

Mode = Literal["model", "e2e"]
Call = Callable[[], object]


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

    def prepare(self) -> None:
        """One-off work a user does once, before loading (an export, a quantization): not timed."""

    def load(self, threads: int) -> None:
        raise NotImplementedError

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        raise NotImplementedError

    def close(self) -> None:
        pass


def is_int8(artifact: Artifact) -> bool:
    return "int8" in str(artifact.manifest.get("precision", "fp32"))


def run_pipeline(pipeline: Any, task: str, inputs: PointInputs) -> Call:
    """Call an encoderforge pipeline the way users do: the batch of texts, with the point's batch size.
    Embeddings go through `encode` (sentence embeddings, as sentence-transformers returns them)."""
    texts, batch = inputs.texts, inputs.batch_size
    if task == "feature-extraction" and hasattr(pipeline, "encode"):
        return lambda: pipeline.encode(texts, batch_size=batch)
    kwargs = {"batch_size": batch} if "batch_size" in inspect.signature(pipeline.__call__).parameters else {}
    if task == "question-answering":
        questions, contexts = [q for q, _ in texts], [c for _, c in texts]
        return lambda: pipeline(question=questions, context=contexts, **kwargs)
    if task == "multiple-choice":
        items = [{"prompt": prompt, "choices": list(choices)} for prompt, choices in texts]
        return lambda: pipeline(items, **kwargs)
    if task == "text-generation":
        return lambda: pipeline(texts, max_new_tokens=1, **kwargs)
    return lambda: pipeline(texts, **kwargs)


def session_or_pipeline_call(session: Any, pipeline: Any, no_pipeline: str | None, task: str, mode: Mode,
                             inputs: PointInputs) -> Call:
    """Model-only: the session on the point's feed; end to end: the pipeline on its texts (or Skip why not)."""
    if mode == "model":
        feed = inputs.feed
        return lambda: session.run(feed)
    if pipeline is None:
        raise Skip(no_pipeline or "pipeline not loaded")
    return run_pipeline(pipeline, task, inputs)


class EncoderForgeEngine(Engine):
    """An artifact through encoderforge.load (onnxruntime CPU): graph only, or text in -> answer out."""

    def __init__(self, artifact: Artifact, group: Group) -> None:
        precision = artifact.manifest.get("precision", "fp32")
        passes = [p.get("name", "?") if isinstance(p, dict) else str(p) for p in artifact.manifest.get("passes", [])]
        super().__init__(artifact.path.name, "ours", group,
                         f"encoderforge {precision} ({', '.join(passes) or 'no passes'})",
                         {"precision": precision, "passes": passes})
        self.artifact = artifact
        self.pipeline: Any = None
        self.session: Any = None
        self.no_pipeline: str | None = None

    def load(self, threads: int) -> None:
        from encoderforge.runtime import load
        from encoderforge.runtime.backends import get_backend

        try:
            self.pipeline = load(self.artifact.path, device="cpu", verify=False, intra_op_threads=threads)
            self.session = self.pipeline.session
        except KeyError as exc:  # no pipeline registered for this task yet: model-only still works
            self.no_pipeline = f"no encoderforge pipeline for task {self.artifact.task!r} ({exc})"
            self.session = get_backend("onnxruntime-cpu").load(str(self.artifact.model_path), intra_op_threads=threads)

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        return session_or_pipeline_call(self.session, self.pipeline, self.no_pipeline, self.artifact.task, mode, inputs)

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
        self.no_pipeline: str | None = None

    def _standard_export(self) -> Artifact:
        """The group's plain export: an artifact without passes, else a fresh export of the source."""
        for artifact in self.group.artifacts:
            if not artifact.manifest.get("passes") and artifact.manifest.get("precision", "fp32") == "fp32":
                return artifact
        for artifact in self.group.artifacts:  # `optimize` records the fp32 export it started from
            origin = artifact.manifest.get("optimized_from") or {}
            if origin.get("path") and (Path(origin["path"]) / "manifest.json").is_file():
                plain = Artifact.load(origin["path"], verify=False)
                if not plain.manifest.get("passes") and plain.manifest.get("precision", "fp32") == "fp32":
                    return plain
        target = self.workdir / f"{self.group.key}-export"
        if (target / "manifest.json").is_file():
            return Artifact.load(target, verify=False)
        if self.group.source is None:
            raise Skip("needs the source checkpoint for a standard export, and the manifest's source is not a "
                       "directory here; pass an fp32 artifact without passes alongside")
        try:
            from encoderforge.exporters import ExportConfig, export
        except ImportError as exc:
            raise Skip(f"exporting the baseline needs the export extra ({exc}); pip install 'encoderforge[export]'")
        try:
            return export(ExportConfig(model=str(self.group.source), task=self.group.task, output=target))
        except (ImportError, EncoderForgeError) as exc:
            raise Skip(f"standard export of {self.group.source} failed: {exc}") from exc

    def _model_file(self) -> tuple[Artifact, Path]:
        plain = self._standard_export()
        if not self.int8:
            return plain, plain.model_path
        from onnxruntime.quantization import quantize_dynamic

        out = self.workdir / f"{self.group.key}-ort-int8.onnx"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            quantize_dynamic(plain.model_path, out, use_external_data_format=bool(plain.manifest.get("external_data")))
        return plain, out

    def prepare(self) -> None:
        self._prepared = self._model_file()

    def load(self, threads: int) -> None:
        import onnxruntime as ort

        from encoderforge.runtime.backends.onnxruntime import OrtSession
        from encoderforge.runtime.pipelines import PIPELINES

        plain, path = getattr(self, "_prepared", None) or self._model_file()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        raw = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.session = OrtSession(raw, self.name, io_binding=False)
        self.info["model_file"] = str(path)
        if plain.task in PIPELINES:
            self.pipeline = PIPELINES.get(plain.task)(self.group.artifacts[0], self.session)
            self.description += "; end-to-end inside encoderforge's pipeline (same tokenization and post-processing)"
        else:
            self.no_pipeline = f"no encoderforge pipeline for task {plain.task!r}"

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        return session_or_pipeline_call(self.session, self.pipeline, self.no_pipeline, self.group.task, mode, inputs)

    def close(self) -> None:
        self.session = self.pipeline = None


def default_workdir() -> Path:
    root = Path(os.environ.get("ENCODERFORGE_BENCH_CACHE", tempfile.gettempdir())) / "encoderforge-bench"
    root.mkdir(parents=True, exist_ok=True)
    return root

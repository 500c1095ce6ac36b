"""`--precision auto` (the default of `optimize --target cpu`): build the CPU candidates, measure each on this
machine, keep the fastest within the accuracy bound.

    graphs (built once)                 candidates (engine x precision)
    fused         cpu fp32 pipeline  ─► onnxruntime-cpu fp32
    int8-dynamic  cpu int8-dynamic   ─► onnxruntime-cpu int8-dynamic
    int8-static   cpu int8-static    ─► onnxruntime-cpu int8-static, openvino int8-static (rest in bf16 / f32)
    int8-static-nncf  nncf.quantize  ─► openvino int8-static (NNCF's QDQ)
    standard      the export, SDPA   ─► openvino f32, openvino bf16 (CPUs with AMX-BF16 / AVX512-BF16)
                  guards dropped

Each candidate is loaded through its runtime backend exactly as `load()` will run it, checked on held-out
text against the fp32 source (fidelity.py's accuracy drop) and timed at the artifact's typical shapes (batch
1 and 8 at sequence 128 and 48 (capped at the artifact's maximum; 48 is off OpenVINO's power-of-two buckets,
so padding costs what it costs real traffic of mixed lengths), candidates interleaved round by round so a burst of
load elsewhere hits them alike. A candidate outside the bound is never timed, and one more than 1.5x behind the
fastest after the first round is timed no further. The score is the geometric mean of the p50s; the fastest
candidate within the bound wins. Graphs that start with the same passes share that work (`_build_graphs`).
The output artifact holds the winner's graph and, in its manifest's `selection`, the whole table (engine,
precision, p50 per shape, fidelity, why each other one was rejected), which `load()` reads to run the
artifact on the chosen backend.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from encoderforge.artifact import Artifact
from encoderforge.cpu import BF16_FLAGS, INT8_FLAGS, CpuFeatures, current_cpu
from encoderforge.errors import EncoderForgeError, UnsupportedError, ValidationError
from encoderforge.graph_passes.quantize_nncf import nncf_missing
from encoderforge.manifest import Candidate, LatencyPoint, Precision, Selection
from encoderforge.manifest.selection import Options
from encoderforge.onnx_files import copy_model
from encoderforge.runtime.backends import Session, get_backend

if TYPE_CHECKING:
    from encoderforge.fidelity import FidelityReport
    from encoderforge.graph_passes import OptimizeConfig

log = logging.getLogger(__name__)

Shape = tuple[int, int]  # (batch size, sequence length)

ORT = "onnxruntime-cpu"
OPENVINO = "openvino"
# graph name -> (precision of the graph, the cpu pipeline that builds it or the passes themselves)
GRAPHS: dict[str, tuple[Precision, Precision | tuple[str, ...]]] = {
    "fused": (Precision.FP32, Precision.FP32),
    "int8-dynamic": (Precision.INT8_DYNAMIC, Precision.INT8_DYNAMIC),
    "int8-static": (Precision.INT8_STATIC, Precision.INT8_STATIC),
    "int8-static-nncf": (Precision.INT8_STATIC, ("drop-sdpa-guards", "int8-static-nncf")),
    "standard": (Precision.FP32, ("drop-sdpa-guards",)),  # standard ops, so OpenVINO fuses attention
}


def graph_passes(name: str) -> tuple[str, ...]:
    """The passes that build graph `name` from the source export."""
    from encoderforge.graph_passes.pipelines import pipeline

    built_by = GRAPHS[name][1]
    return built_by if isinstance(built_by, tuple) else pipeline("cpu", built_by.value)


@dataclass(frozen=True, kw_only=True)
class AutoOptions:
    """How auto measures. Defaults keep roberta-base on 2 cores well under 5 minutes."""

    batch_sizes: tuple[int, ...] = (1, 8)
    sequence_lengths: tuple[int, ...] = (128, 48)  # capped at the artifact's maximum length
    seconds: float = 1.5  # timing budget per candidate and (batch, sequence) shape, spread over `rounds`
    rounds: int = 3
    backends: tuple[str, ...] | None = None  # None: every installed CPU engine
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UnsupportedError(f"auto batch sizes {self.batch_sizes!r} must be positive, e.g. (1, 8)")
        if not self.sequence_lengths or any(n < 8 for n in self.sequence_lengths):
            raise UnsupportedError(f"auto sequence lengths {self.sequence_lengths!r} must be >= 8, e.g. (128, 48)")
        if self.seconds <= 0 or self.rounds < 1:
            raise UnsupportedError(f"auto timing needs seconds > 0 and rounds >= 1, got {self.seconds}, {self.rounds}")
        unknown = set(self.backends or ()) - {ORT, OPENVINO}
        if unknown:
            raise UnsupportedError(f"auto measures {ORT} and {OPENVINO}; unknown backend(s) {sorted(unknown)}")

    def shapes(self, max_length: int) -> tuple[Shape, ...]:
        """(batch, sequence) points, every sequence capped at the artifact's maximum."""
        lengths = dict.fromkeys(min(n, max_length) for n in self.sequence_lengths)
        return tuple((b, n) for n in lengths for b in self.batch_sizes)


@dataclass(frozen=True)
class Plan:
    """A candidate before measurement: which backend runs which graph at which precision."""

    backend: str
    precision: str  # fp32 | bf16 | int8-dynamic | int8-static
    graph: str  # a key of GRAPHS
    options: Options = ()  # backend options load() will pass

    def relies_on(self, cpu: CpuFeatures) -> tuple[str, ...]:
        """The flags of this CPU the candidate's speed comes from (any one suffices at load time)."""
        wanted = BF16_FLAGS if "bf16" in (self.precision, dict(self.options).get("precision")) else frozenset()
        if self.precision.startswith("int8"):
            wanted = wanted | INT8_FLAGS
        return tuple(sorted(cpu.flags & wanted))


def buckets(max_length: int) -> tuple[int, ...]:
    """Sequence-length buckets of OpenVINO's static-shape candidates: powers of two from 16, and the maximum."""
    lengths = [n for n in (16, 32, 64, 128, 256, 512, 1024, 2048) if n < max_length]
    return (*lengths, max_length)


def plans(cpu: CpuFeatures, max_length: int, *, padding_sensitive: bool = False) -> list[tuple[Plan, str | None]]:
    """Every candidate with the reason it cannot be tried on this CPU (None: it can). OpenVINO's fast ones
    also run compiled per length bucket (padded up to it), which can be faster than its dynamic shapes, except
    for models whose outputs padding changes (ConvBERT's convolutions see the pads)."""
    rest = "bf16" if cpu.bf16 else "f32"
    no_bf16 = None if cpu.bf16 else "this CPU has no AMX-BF16 / AVX512-BF16 (bf16 would be emulated)"
    static = ("static_sequences", buckets(max_length))
    no_nncf = nncf_missing()
    found = [
        (Plan(ORT, "fp32", "fused"), None),
        (Plan(ORT, "int8-dynamic", "int8-dynamic"), None),
        (Plan(ORT, "int8-static", "int8-static"), None),
        (Plan(OPENVINO, "fp32", "standard", (("precision", "f32"),)), None),
        (Plan(OPENVINO, "bf16", "standard", (("precision", "bf16"),)), no_bf16),
        (Plan(OPENVINO, "bf16", "standard", (("precision", "bf16"), static)), no_bf16),
        (Plan(OPENVINO, "int8-static", "int8-static", (("precision", rest),)), None),
        (Plan(OPENVINO, "int8-static", "int8-static", (("precision", rest), static)), None),
        (Plan(OPENVINO, "int8-static", "int8-static-nncf", (("precision", rest),)), no_nncf),
        (Plan(OPENVINO, "int8-static", "int8-static-nncf", (("precision", rest), static)), no_nncf),
    ]
    return [(plan, why_not) for plan, why_not in found if not (padding_sensitive and static in plan.options)]


def auto_passes(target: str) -> tuple[str, ...]:
    """Every pass auto may run (for option checks); auto is a CPU procedure."""
    if target != "cpu":
        raise UnsupportedError(f"--precision auto measures CPU engines; for --target {target} choose "
                               "--precision fp32, fp16 or int8-static")
    return tuple(dict.fromkeys(n for name in GRAPHS for n in graph_passes(name)))


@dataclass
class _Trial:
    plan: Plan
    relies_on: tuple[str, ...]
    session: Session | None = None
    rejected: str | None = None
    fidelity: FidelityReport | None = None
    samples: dict[Shape, list[float]] = field(default_factory=dict)  # (batch, sequence) -> ms per call

    def p50(self, shape: Shape) -> float:
        return float(np.median(self.samples[shape]))

    def score(self, shapes: tuple[Shape, ...]) -> float:
        return math.exp(sum(math.log(self.p50(s)) for s in shapes) / len(shapes))


class _Progress:
    """A tqdm bar over the auto steps (silent when disabled)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="auto", unit="step", leave=False)

    def step(self, what: str, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.set_description(f"auto: {what}")
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def optimize_auto(source: Artifact, config: OptimizeConfig, started: float) -> Artifact:
    """Build, measure and choose (see the module doc); write the winner to `config.output`."""
    from encoderforge.graph_passes import AUTO, bound_for, write_artifact

    settings = config.auto
    cpu = current_cpu()
    bound = bound_for(config, AUTO)
    wanted = settings.backends or (ORT, OPENVINO)
    trials: list[_Trial] = []
    skipped: list[Candidate] = []
    for plan, why_not in plans(cpu, source.max_length, padding_sensitive=source.manifest.padding_sensitive):
        reason = why_not
        if plan.backend not in wanted:
            reason = "not asked for (auto backends)"
        elif reason is None:
            reason = get_backend(plan.backend).available()
        if reason is None:
            trials.append(_Trial(plan, plan.relies_on(cpu)))
        else:
            skipped.append(Candidate(backend=plan.backend, precision=plan.precision, graph=plan.graph,
                                     options=plan.options, rejected=reason))
    graph_names = list(dict.fromkeys(t.plan.graph for t in trials))
    shapes = settings.shapes(source.max_length)
    progress = _Progress(len(graph_names) + len(trials) + len(shapes) * settings.rounds,
                         settings.progress)
    try:
        with tempfile.TemporaryDirectory(prefix="encoderforge-auto-") as scratch:
            built = _build_graphs(source, graph_names, trials, config, Path(scratch), progress)
            _load_and_check(source, trials, built, config, progress)
            _apply_bound(trials, bound)  # a candidate outside the bound is never timed
            live = [t for t in trials if t.session is not None and t.rejected is None]
            _time(source, live, shapes, settings, progress)
            chosen = _choose(trials, shapes, bound, config)
            table = _table(trials, skipped, chosen, shapes)
            selection = Selection(backend=chosen.plan.backend, precision=chosen.plan.precision,
                                  options=chosen.plan.options, cpu_model=cpu.model, cpu_kind=cpu.kind,
                                  cpu_features=chosen.relies_on, max_accuracy_drop=bound, candidates=table)
            model, results, _ = built[chosen.plan.graph]
            assert chosen.fidelity is not None  # _choose only accepts measured trials
            fidelity = {**chosen.fidelity.as_manifest(),
                        "reference": f"fp32 source artifact, onnxruntime CPU; candidate on {chosen.plan.backend} "
                                     f"{chosen.plan.precision}",
                        "bound": {"max_accuracy_drop": bound, "explicit": config.max_accuracy_drop is not None}}
            return write_artifact(source, model, config, results, fidelity, time.perf_counter() - started,
                                  precision=GRAPHS[chosen.plan.graph][0].value, selection=selection)
    finally:
        progress.close()
        for trial in trials:
            if trial.session is not None:
                trial.session.close()


Built = dict[str, tuple[onnx.ModelProto, list[Any], Artifact]]  # graph name -> (graph, pass results, artifact)


def _build_graphs(source: Artifact, names: list[str], trials: list[_Trial], config: OptimizeConfig, work: Path,
                  progress: _Progress) -> Built:
    """Every graph in `names`, written as an artifact under `work`. A pass sequence that starts several graphs
    (drop-sdpa-guards: standard, int8-static and NNCF's; fuse-attention: fused and int8-dynamic) runs once."""
    from encoderforge.graph_passes import resolve, run_passes, write_artifact

    sequences = {name: graph_passes(name) for name in names}
    starts = Counter(seq[:k] for seq in sequences.values() for k in range(1, len(seq) + 1))
    shared = {prefix for prefix, graphs in starts.items() if graphs > 1}
    prefixes: dict[tuple[str, ...], tuple[onnx.ModelProto, list[Any]]] = {}  # kept copies of shared prefixes
    built: Built = {}
    for name in names:
        sequence = sequences[name]
        try:
            done = max((k for k in range(len(sequence) + 1) if sequence[:k] in prefixes), default=0)
            start = prefixes.get(sequence[:done])
            model = copy_model(start[0]) if start else None
            results = list(start[1]) if start else []
            for k in range(done, len(sequence)):
                model, more = run_passes(source, [resolve(sequence[k])], config, work, start=model)
                results += more
                if sequence[:k + 1] in shared:
                    prefixes[sequence[:k + 1]] = (copy_model(model), list(results))
            assert model is not None  # every graph has at least one pass
            built[name] = (model, results, write_artifact(source, model, config, results, {}, 0.0,
                                                          output=work / name, precision=GRAPHS[name][0].value,
                                                          force=True))
        except EncoderForgeError as exc:
            for trial in trials:
                if trial.plan.graph == name:
                    trial.rejected = f"building the {name} graph failed: {exc}"
        progress.step(f"built {name} graph")
    return built


def _load_and_check(source: Artifact, trials: list[_Trial], built: Built,
                    config: OptimizeConfig, progress: _Progress) -> None:
    """Load every candidate on its backend and measure its fidelity against the fp32 source."""
    from encoderforge.fidelity import compare_outputs, fidelity_feeds, make_session, pooling_of, run_model

    feeds = fidelity_feeds(source, count=config.fidelity_samples)
    reference = run_model(make_session(source.model_path), feeds)
    for trial in trials:
        if trial.rejected is None:
            try:
                session = get_backend(trial.plan.backend).load(built[trial.plan.graph][2], **dict(trial.plan.options))
                trial.session = session  # closed at the end whatever happens next
                names = {i.name for i in session.inputs()}
                outputs = [session.run({k: v for k, v in feed.items() if k in names}) for feed in feeds]
                trial.fidelity = compare_outputs(reference, outputs, feeds, pooling=pooling_of(source))
            except EncoderForgeError as exc:
                trial.rejected = f"{trial.plan.backend} could not run it: {exc}"
        progress.step(f"checked {trial.plan.backend} {trial.plan.precision}")


def _time(source: Artifact, trials: list[_Trial], shapes: tuple[Shape, ...], settings: AutoOptions,
          progress: _Progress) -> None:
    """p50 per shape, candidates interleaved call block by call block (a warm-up call each first); after the first
    round, those far behind the fastest are timed no further (`_prune`)."""
    from encoderforge.sample_inputs import build_inputs
    from encoderforge.tokenization import ArtifactTokenizer

    tokenizer = ArtifactTokenizer.from_artifact(source)
    per_round = settings.seconds / settings.rounds
    calls: dict[Shape, dict[int, Callable[[], object]]] = {}  # shape -> trial index -> one call
    for shape in shapes:
        feed = build_inputs(source, tokenizer, *shape).feed
        calls[shape] = {}
        for index, trial in enumerate(trials):
            assert trial.session is not None
            names = {i.name for i in trial.session.inputs()}
            own = {k: v for k, v in feed.items() if k in names}
            run = trial.session.run
            calls[shape][index] = lambda run=run, own=own: run(own)  # type: ignore[misc]
            trial.samples[shape] = []
            calls[shape][index]()  # warm-up: first-call allocations and compilation
    active = list(range(len(trials)))
    for round_index in range(settings.rounds):
        for shape in shapes:
            for index in active:
                call, samples = calls[shape][index], trials[index].samples[shape]
                deadline = time.perf_counter() + per_round
                while True:  # at least one call per round, however slow
                    start = time.perf_counter()
                    call()
                    samples.append((time.perf_counter() - start) * 1e3)
                    if time.perf_counter() >= deadline:
                        break
            progress.step(f"timed batch {shape[0]} x {shape[1]}, round {round_index + 1}")
        if round_index == 0 and settings.rounds > 1:
            active = [i for i in active if i not in _prune([trials[i] for i in active], shapes)]


# After the first round a candidate this many times slower than the fastest stops being timed: noise between
# rounds moves p50s by percents, not by half; the table keeps its first-round figures.
PRUNE_RATIO = 1.5


def _prune(trials: list[_Trial], shapes: tuple[Shape, ...]) -> set[int]:
    """Indices (into `trials`) of those more than PRUNE_RATIO x the fastest's score; each is told why."""
    fastest = min(t.score(shapes) for t in trials)
    pruned = set()
    for index, trial in enumerate(trials):
        ratio = trial.score(shapes) / fastest
        if ratio > PRUNE_RATIO:
            trial.rejected = (f"slower: {ratio:.2f}x the fastest one's time in the first round "
                              f"(> {PRUNE_RATIO:g}x: timed no further)")
            pruned.add(index)
    return pruned


def _apply_bound(trials: list[_Trial], bound: float) -> None:
    """Reject every checked trial outside the fidelity bound, with the reason."""
    for trial in trials:
        if trial.rejected is None and trial.fidelity is not None:
            drop, cosine = trial.fidelity.accuracy_drop, trial.fidelity.min_cosine
            if not trial.fidelity.finite or not drop <= bound:
                trial.rejected = f"accuracy drop {drop:.3g} > bound {bound:g}"
            elif not cosine >= 1 - bound:  # every output row, short ones too (the bench's qualifying rule)
                trial.rejected = f"min cosine {cosine:.4g} < {1 - bound:g} (1 - bound) on some output row"


def _choose(trials: list[_Trial], shapes: tuple[Shape, ...], bound: float, config: OptimizeConfig) -> _Trial:
    """The fastest trial within the bound; every other trial gets its reason."""
    _apply_bound(trials, bound)
    accepted = [t for t in trials if t.rejected is None and t.samples]
    if not accepted:
        tried = "; ".join(f"{t.plan.backend} {t.plan.precision}: {t.rejected}" for t in trials) or "no candidate"
        relax = "relax it with --max-accuracy-drop" if config.max_accuracy_drop is None else "raise --max-accuracy-drop"
        raise ValidationError(f"no auto candidate meets the fidelity bound (accuracy drop <= {bound:g}): {tried}; "
                              f"{relax}, or pick a --precision")
    chosen = min(accepted, key=lambda t: t.score(shapes))
    for trial in accepted:
        if trial is not chosen:
            trial.rejected = f"slower: {trial.score(shapes) / chosen.score(shapes):.2f}x the chosen one's time"
    return chosen


def _table(trials: list[_Trial], skipped: list[Candidate], chosen: _Trial,
           shapes: tuple[Shape, ...]) -> tuple[Candidate, ...]:
    """Every candidate, measured ones fastest first, then those that could not be tried."""
    rows = []
    for trial in trials:
        report = trial.fidelity
        latency = tuple(LatencyPoint(b, n, round(trial.p50((b, n)), 3)) for b, n in shapes if trial.samples.get((b, n)))
        rows.append(Candidate(
            backend=trial.plan.backend, precision=trial.plan.precision, graph=trial.plan.graph,
            options=trial.plan.options, latency=latency,
            score_ms=round(trial.score(shapes), 3) if len(latency) == len(shapes) else None,
            accuracy_drop=None if report is None else float(report.accuracy_drop),
            min_cosine=None if report is None else float(report.min_cosine),
            median_sqnr_db=None if report is None or not math.isfinite(report.median_sqnr_db)
            else float(report.median_sqnr_db),
            rejected=None if trial is chosen else trial.rejected,
        ))
    return tuple(sorted(rows, key=lambda c: (c.score_ms is None, c.score_ms or 0.0))) + tuple(skipped)


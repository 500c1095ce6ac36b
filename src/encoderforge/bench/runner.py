"""The sweep: verify the artifacts, group them by source checkpoint, load our engines and the peers, then for
every (mode, batch size, sequence length) time every engine on the same inputs, interleaved point by point and,
within a point, round by round (`rounds`), so that a burst of load from elsewhere on a shared machine hits all
engines alike. After the sweep, every
loaded engine's model-only outputs are checked against one fp32 reference per group (qualify.py)."""

from __future__ import annotations

import datetime
import gc
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoderforge.artifact import Artifact
from encoderforge.bench.engines import (
    EncoderForgeEngine,
    Engine,
    Group,
    Mode,
    OrtBaselineEngine,
    Skip,
    default_workdir,
    is_int8,
)
from encoderforge.bench.fingerprint import fingerprint
from encoderforge.bench.measure import PeakMemory, PointTimer, rss_mb
from encoderforge.bench.openvino_peers import openvino_peers
from encoderforge.bench.optimum_peer import OptimumEngine
from encoderforge.bench.peers import SentenceTransformersEngine, TorchEngine
from encoderforge.bench.qualify import (
    FEED_BATCH,
    MIN_COSINE,
    MIN_SQNR_DB,
    FidelityCheck,
    fastest_qualifying,
    measure_group,
)
from encoderforge.errors import InputError
from encoderforge.sample_inputs import PointInputs, build_inputs, check_limits
from encoderforge.tokenization import ArtifactTokenizer

PEERS = ("torch", "ort-baseline", "sentence-transformers", "optimum", "optimum-intel", "openvino",
         "openvino-nncf-int8")
SCHEMA = "encoderforge-bench/1"


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    artifacts: tuple[Path, ...]
    batch_sizes: tuple[int, ...] = (1, 8)
    seq_lens: tuple[int, ...] = (16, 128)
    modes: tuple[Mode, ...] = ("model", "e2e")
    warmup: int = 10
    iters: int = 100
    max_seconds: float | None = 15.0  # time budget per (engine, point); None: always run `iters`
    rounds: int = 3  # the timed calls of a point are split into rounds, engines interleaved within each
    compare: tuple[str, ...] = ()
    threads: int | None = None  # None: the cores this process may use
    optimum_python: str | None = None
    optimum_intel_python: str | None = None
    progress: bool = True
    workdir: Path | None = None  # cache for baseline exports; default: $TMPDIR/encoderforge-bench
    fidelity_samples: int = 20  # held-out feeds for the fidelity check of every engine; 0: no check


def resolve_threads(threads: int | None) -> int:
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads {threads} is not positive; pass a thread count >= 1")
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _source(artifact: Artifact) -> Path | None:
    raw = artifact.manifest.source or ""
    for candidate in (Path(raw).expanduser(), artifact.path.parent / raw):
        if raw and (candidate / "config.json").is_file():
            return candidate.resolve()
    return None


def make_groups(artifacts: list[Artifact]) -> list[Group]:
    by_key: dict[tuple[str, str], list[Artifact]] = {}
    for artifact in artifacts:
        source = _source(artifact)
        by_key.setdefault((str(source or artifact.path.resolve()), artifact.task), []).append(artifact)
    groups = []
    for (origin, task), members in by_key.items():
        source = _source(members[0])
        name = members[0].path.name if source is None else (
            source.parent.name if source.name in ("model", "checkpoint", "snapshot") else source.name)
        entry = members[0].manifest.files.get(members[0].manifest.model_file)
        file_key = {} if entry is None else {"sha256": entry.sha256, "bytes": entry.bytes}
        digest = hashlib.sha256(f"{origin}|{task}|{file_key}".encode()).hexdigest()[:10]
        groups.append(Group(name, f"{name}-{digest}", task, source, tuple(members)))
    return groups


def make_peers(group: Group, compare: tuple[str, ...], *, workdir: Path, optimum_python: str | None,
               optimum_intel_python: str | None = None) -> list[Engine]:
    unknown = [c for c in compare if c not in PEERS]
    if unknown:
        raise InputError(f"unknown --compare peer {unknown[0]!r}; choose from {', '.join(PEERS)} (comma separated)")
    precisions = sorted({is_int8(a) for a in group.artifacts}, reverse=True)  # int8 first
    peers: list[Engine] = []
    for name in compare:
        if name == "torch":
            peers.append(TorchEngine(group))
        elif name == "ort-baseline":
            peers.extend(OrtBaselineEngine(group, int8=int8, workdir=workdir) for int8 in precisions)
        elif name == "sentence-transformers":
            peers.append(SentenceTransformersEngine(group))
        elif name.startswith("openvino"):
            peers.extend(openvino_peers(name, group, workdir=workdir))
        elif name == "optimum-intel":  # OpenVINO's default precision and NNCF's int8, whatever ours is
            peers.extend(OptimumEngine(group, python=optimum_intel_python, int8=int8, flavor="optimum-intel")
                         for int8 in (True, False))
        else:
            peers.extend(OptimumEngine(group, python=optimum_python, int8=int8) for int8 in precisions)
    return peers


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    bar: Any = None
    if enabled:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True, leave=False)
        except ImportError:
            bar = None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Tracker:
    """Per-engine memory: the RSS an engine kept (load + arenas) plus its transient peak above that."""

    def __init__(self) -> None:
        self.memory = PeakMemory()
        self.kept: dict[str, float] = {}
        self.peak: dict[str, float] = {}

    @contextmanager
    def watch(self, name: str) -> Iterator[None]:
        before = self.memory.reset()
        try:
            yield
        finally:
            after, high = rss_mb(), self.memory.peak_mb()
            kept = self.kept.get(name, 0.0)
            self.peak[name] = max(self.peak.get(name, 0.0), kept + max(0.0, high - before))
            self.kept[name] = kept + max(0.0, after - before)


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Measure every artifact and peer over the sweep; return the result document (see report.py)."""
    if not config.artifacts:
        raise InputError("no artifact given; pass one or more artifact directories")
    if config.iters < 1 or config.warmup < 0:
        raise InputError(f"--iters {config.iters} / --warmup {config.warmup}: need iters >= 1 and warmup >= 0")
    if config.rounds < 1:
        raise InputError(f"--rounds {config.rounds}: need at least 1 (the timed calls are split into rounds)")
    if config.fidelity_samples < 0:
        raise InputError(f"--fidelity-samples {config.fidelity_samples} is negative; pass 0 (no check) or more")
    threads = resolve_threads(config.threads)
    artifacts = [Artifact.load(path, verify=True) for path in config.artifacts]
    for artifact in artifacts:
        check_limits(artifact, list(config.batch_sizes), list(config.seq_lens))
    groups = make_groups(artifacts)
    workdir = config.workdir or default_workdir()
    engines: list[Engine] = []
    for group in groups:
        engines.extend(EncoderForgeEngine(a, group) for a in group.artifacts)
        engines.extend(make_peers(group, config.compare, workdir=workdir, optimum_python=config.optimum_python,
                                  optimum_intel_python=config.optimum_intel_python))

    inputs: dict[tuple[str, int, int], PointInputs] = {}
    for group in groups:
        tokenizer = ArtifactTokenizer.from_artifact(group.artifacts[0])
        for b in config.batch_sizes:
            for s in config.seq_lens:
                inputs[(group.key, b, s)] = build_inputs(group.artifacts[0], tokenizer, b, s)

    tracker = _Tracker()
    records: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    loaded: list[Engine] = []
    for engine in engines:
        record = records[engine.record_key] = {
            "name": engine.name, "role": engine.role, "group": engine.group.name, "skipped": None}
        if getattr(engine, "external", False):
            continue
        try:
            engine.prepare()
            gc.collect()
            started = time.perf_counter()
            with tracker.watch(engine.record_key):
                engine.load(threads)
        except Skip as exc:
            record["skipped"] = str(exc)
            _say(f"skipped {engine.name} ({engine.group.name}): {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 -- a peer that cannot load is reported, the others still run
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            record["skipped"] = f"failed to load: {type(exc).__name__}: {first}"
            _say(f"skipped {engine.name} ({engine.group.name}): {record['skipped']}")
            continue
        record["load_s"] = round(time.perf_counter() - started, 3)
        loaded.append(engine)

    points = [(mode, b, s) for mode in config.modes for b in config.batch_sizes for s in config.seq_lens]
    mode_skips: set[tuple[str, str]] = set()

    def skip(engine: Engine, row: dict[str, Any], exc: Exception) -> None:
        key, mode = engine.record_key, row["mode"]
        if isinstance(exc, Skip):
            row["skipped"] = str(exc)
            if (key, mode) not in mode_skips:
                mode_skips.add((key, mode))
                _say(f"skipped {engine.name} {mode} ({engine.group.name}): {exc}")
        else:  # one failing engine or point must not lose the sweep
            row["skipped"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _say(f"{engine.name} {mode} b{row['batch_size']} s{row['seq_len']} {row['skipped']}")

    rounds = config.rounds
    per_round = None if config.max_seconds is None else config.max_seconds / rounds
    shares = [config.iters // rounds + (r < config.iters % rounds) for r in range(rounds)]  # `iters` in all
    with _progress(len(points) * len(loaded) * rounds, config.progress) as bar:
        for index, (mode, b, s) in enumerate(points):
            order = loaded[index % max(1, len(loaded)):] + loaded[: index % max(1, len(loaded))]
            rows: dict[str, dict[str, Any]] = {}  # by record_key, in `order`
            timers: dict[str, PointTimer] = {}
            for engine in order:  # first call and warm-up of every engine, then the timed rounds
                key = engine.record_key
                rows[key] = {"engine": engine.name, "group": engine.group.name, "mode": mode,
                             "batch_size": b, "seq_len": s}
                try:
                    call = engine.call(mode, inputs[(engine.group.key, b, s)])
                    with tracker.watch(engine.record_key):
                        timers[key] = PointTimer(call, warmup=config.warmup, max_seconds=config.max_seconds)
                except Exception as exc:  # noqa: BLE001 -- Skip or failure: reported in the row
                    skip(engine, rows[key], exc)
            for round_index in range(rounds):
                shift = round_index % max(1, len(order))
                for engine in order[shift:] + order[:shift]:
                    key = engine.record_key
                    if bar is not None:
                        bar.set_description(f"{engine.name} {mode} b{b} s{s} round {round_index + 1}/{rounds}")
                    if key in timers and shares[round_index]:
                        try:
                            with tracker.watch(engine.record_key):
                                timers[key].sample(iters=shares[round_index], max_seconds=per_round,
                                                   min_iters=-(-5 // rounds), rewarm=len(timers) > 1)
                        except Exception as exc:  # noqa: BLE001 -- Skip or failure: reported in the row
                            skip(engine, rows[key], exc)
                            del timers[key]
                    if bar is not None:
                        bar.update(1)
            for engine in order:
                key = engine.record_key
                row = rows[key]
                if key in timers:
                    tokens = b * s if mode == "model" else inputs[(engine.group.key, b, s)].e2e_tokens
                    timing = timers[key].timing(batch_size=b, tokens=tokens)
                    row["timing"] = timing.to_dict()
                    records[key].setdefault("first_call_ms", round(timing.first_call_ms, 3))
                results.append(row)
    for engine in loaded:
        records[engine.record_key]["peak_rss_mb"] = round(tracker.peak.get(engine.record_key, 0.0), 1)
    checks: dict[str, FidelityCheck] = {}
    if config.fidelity_samples:
        for group in groups:
            _say(f"fidelity of {group.name}'s engines on {config.fidelity_samples} held-out feeds")
            check = measure_group(group, [e for e in loaded if e.group is group], records,
                                  samples=config.fidelity_samples, workdir=workdir)
            if check is not None:
                checks[group.key] = check
    for engine in loaded:
        engine.close()
    gc.collect()

    for engine in engines:
        if getattr(engine, "external", False):
            _run_external(engine, config, threads, inputs, records, results, checks.get(engine.group.key))

    for engine in engines:
        record = records[engine.record_key]
        record.update(description=engine.description, info=engine.info)
    identities = {a.path.name: {"path": str(a.path), "task": a.task, "family": a.family,
                                "precision": a.manifest.precision.value,
                                "model_sha256": a.manifest.model_sha256,
                                "source": a.manifest.source} for a in artifacts}
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"batch_sizes": list(config.batch_sizes), "seq_lens": list(config.seq_lens),
                     "modes": list(config.modes), "warmup": config.warmup, "iters": config.iters,
                     "max_seconds": config.max_seconds, "rounds": rounds, "threads": threads, "compare": list(config.compare),
                     "memory_exact": tracker.memory.exact,
                     "fidelity": {"samples": config.fidelity_samples, "batch_size": FEED_BATCH,
                                  "feeds": "held-out corpus text (encoderforge.fidelity.fidelity_feeds of each "
                                           "group's first artifact)",
                                  "reference": "torch peer when loaded, else the plain fp32 export on onnxruntime",
                                  "bound": {"min_cosine": MIN_COSINE, "median_sqnr_db": MIN_SQNR_DB}}},
        "fingerprint": fingerprint(identities, threads=threads),
        "engines": list(records.values()),
        "results": results,
        "ratios": ratios(results, list(records.values())),
        "fastest_qualifying": fastest_qualifying(results, list(records.values())),
    }


def _run_external(engine: Engine, config: BenchConfig, threads: int, inputs: dict[tuple[str, int, int], PointInputs],
                  records: dict[str, dict[str, Any]], results: list[dict[str, Any]],
                  check: FidelityCheck | None) -> None:
    """Time a peer in its own interpreter; its outputs on the fidelity feeds are scored like everyone's."""
    assert isinstance(engine, OptimumEngine)
    record = records[engine.record_key]
    points = [(mode, inputs[(engine.group.key, b, s)]) for mode in config.modes
              for b in config.batch_sizes for s in config.seq_lens]
    try:
        _say(f"running {engine.name} ({engine.group.name}) in {engine.python}")
        out = engine.run_external(points, threads=threads, warmup=config.warmup, iters=config.iters,
                                  max_seconds=config.max_seconds, fidelity_feeds=check.feeds if check else None,
                                  output_names=list(check.reference.outputs[0]) if check else None)
    except Skip as exc:
        record["skipped"] = str(exc)
        _say(f"skipped {engine.name} ({engine.group.name}): {exc}")
        return
    if check is not None:
        if engine.fidelity_outputs:
            record["fidelity"] = check.score(engine.fidelity_outputs)
        else:
            record["fidelity"] = {"skipped": "its interpreter returned no outputs for the fidelity feeds",
                                  "qualifies": None}
    record.update(load_s=round(out["load_s"], 3), peak_rss_mb=round(out["peak_rss_mb"], 1))
    for point in out["points"]:
        row = {"engine": engine.name, "group": engine.group.name, **point}
        if "timing" in row:
            record.setdefault("first_call_ms", row["timing"]["first_call_ms"])
        results.append(row)


def ratios(results: list[dict[str, Any]], engines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every point where both ran: speedup of each of our engines over each peer (peer p50 / ours p50)."""
    roles = {(e["name"], e["group"]): e["role"] for e in engines}
    timed = {(r["engine"], r["group"], r["mode"], r["batch_size"], r["seq_len"]): r["timing"]
             for r in results if "timing" in r}
    out = []
    for (name, group, mode, b, s), ours in timed.items():
        if roles.get((name, group)) != "ours":
            continue
        for (peer, peer_group, peer_mode, pb, ps), theirs in timed.items():
            if roles.get((peer, peer_group)) == "peer" and (peer_group, peer_mode, pb, ps) == (group, mode, b, s):
                out.append({"engine": name, "peer": peer, "group": group, "mode": mode, "batch_size": b,
                            "seq_len": s, "speedup": round(theirs["p50_ms"] / ours["p50_ms"], 3)})
    return out

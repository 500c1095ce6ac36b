"""CPU benchmark of encoderforge's graph passes against ONNX Runtime's own tools, measured in the same run.

For real-size random-weight roberta-base QA and conv-bert-base token classification at batch 1, seq 128:

    ort-fp32            the standard export, ORT CPU session (all graph optimizations on)
    ort-optimizer       onnxruntime.transformers.optimizer.optimize_model(model_type="bert") of it
    ort-int8-dynamic    onnxruntime.quantization.quantize_dynamic of it (its defaults)
    ef-fp32             encoderforge optimize --target cpu --precision fp32
    ef-int8-dynamic     encoderforge optimize --target cpu --precision int8-dynamic

Variants are timed round-robin (warm-up, then `--iters` runs per round, `--rounds` rounds), with 2 intra-op
threads, so that load from other processes hits every variant alike; the median is reported with the ratio
to ort-fp32 / ort-int8-dynamic of the same run. Fidelity (min cosine, median SQNR, argmax agreement) of each
variant vs ort-fp32 over 20 held-out inputs. `--profile` adds a per-op-type time breakdown (ORT profiling).

    python benchmarks/passes_cpu.py --work out/bench-passes --output benchmarks/results/passes_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from encoderforge.bench.portable import portable
from encoderforge.cpu import current_cpu

MODELS = {"roberta-qa": ("roberta", "question-answering"), "convbert-ner": ("convbert", "token-classification")}
PEER = {"roberta-qa": {"ort-fp32": 134.0, "ort-optimizer": 140.0, "ort-int8-dynamic": 76.0},
        "convbert-ner": {"ort-fp32": 193.0, "ort-int8-dynamic": 166.0}}
TARGETS = {"roberta-qa": {"ef-fp32": 125.0, "ef-int8-dynamic": 55.0}, "convbert-ner": {"ef-int8-dynamic": 100.0}}


def fingerprint() -> dict[str, Any]:
    cpu = current_cpu()
    return {"cpu": cpu.model, "isa": cpu.isa, "cpu_kind": cpu.kind, "logical_cores": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(), "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "python": platform.python_version()}


def artifact_for(name: str, work: Path) -> Path:
    from encoderforge.exporters import ExportConfig, export
    from encoderforge.synthetic import build_checkpoint

    family, task = MODELS[name]
    out = work / f"{name}-fp32"
    if (out / "manifest.json").is_file():
        return out
    checkpoint = work / f"{name}-checkpoint"
    if not (checkpoint / "config.json").is_file():
        build_checkpoint(family, task, checkpoint, size="base")
    export(ExportConfig(model=str(checkpoint), task=task, output=out, force=True))
    return out


def variants(source: Path, work: Path, name: str) -> dict[str, Path]:
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    from encoderforge.artifact import Artifact
    from encoderforge.graph_passes import OptimizeConfig, optimize

    artifact = Artifact.load(source, verify=False)
    config = artifact.config()
    found = {"ort-fp32": artifact.model_path}
    path = work / f"{name}-ort-optimizer.onnx"
    if not path.is_file():
        optimize_model(str(artifact.model_path), model_type="bert", num_heads=config["num_attention_heads"],
                       hidden_size=config["hidden_size"]).save_model_to_file(str(path))
    found["ort-optimizer"] = path
    path = work / f"{name}-ort-int8-dynamic.onnx"
    if not path.is_file():
        quantize_dynamic(str(artifact.model_path), str(path))
    found["ort-int8-dynamic"] = path
    for precision in ("fp32", "int8-dynamic"):
        out = work / f"{name}-ef-{precision}"
        if not (out / "manifest.json").is_file():
            optimize(OptimizeConfig(artifact=source, output=out, precision=precision, force=True))
        found[f"ef-{precision}"] = out / "model.onnx"
    return found


def session(path: Path, threads: int, profile: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_feed(source: Path, seq: int = 128) -> dict[str, np.ndarray]:
    from encoderforge.artifact import Artifact

    artifact = Artifact.load(source, verify=False)
    vocab = int(artifact.config()["vocab_size"])
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(5, vocab - 1, (1, seq)).astype(np.int64),
            "attention_mask": np.ones((1, seq), np.int64), "token_type_ids": np.zeros((1, seq), np.int64)}
    return {k: v for k, v in feed.items() if k in artifact.input_names}


def time_round_robin(sessions: dict[str, Any], feed: dict[str, np.ndarray], *, iters: int, rounds: int,
                     warmup: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, sess in sessions.items():
            for _ in range(warmup):
                sess.run(None, feed)
            for _ in range(iters):
                start = time.perf_counter()
                sess.run(None, feed)
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def cpu_time_round_robin(paths: dict[str, Path], feed: dict[str, np.ndarray], *, iters: int,
                         rounds: int) -> dict[str, list[float]]:
    """CPU time of the calling thread per run with one intra-op thread (ORT then runs on the caller): robust
    to other processes' load on a shared machine, unlike wall time."""
    sessions = {k: session(p, 1) for k, p in paths.items()}
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, sess in sessions.items():
            sess.run(None, feed)
            for _ in range(iters):
                start = time.thread_time()
                sess.run(None, feed)
                times[name].append((time.thread_time() - start) * 1000)
    return times


def fidelity(source: Path, paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    from encoderforge.artifact import Artifact
    from encoderforge.fidelity import compare_outputs, fidelity_feeds, run_model

    feeds = fidelity_feeds(Artifact.load(source, verify=False), count=20, batch_size=1)
    reference = run_model(paths["ort-fp32"], feeds)
    result = {}
    for name, path in paths.items():
        if name == "ort-fp32":
            continue
        report = compare_outputs(reference, run_model(path, feeds), feeds)
        result[name] = {"min_cosine": report.min_cosine, "median_sqnr_db": report.median_sqnr_db,
                        "argmax_agreement": report.argmax_agreement, "max_abs_diff": report.max_abs_diff}
    return result


def profile(path: Path, feed: dict[str, np.ndarray], threads: int, runs: int = 20) -> dict[str, float]:
    """Mean ms per run by op type (ORT profiling; kernel time only)."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(path, threads, profile=str(Path(tmp) / "p"))
        for _ in range(5):
            sess.run(None, feed)
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1000 / (runs + 5)
    return dict(sorted(((k, round(v, 2)) for k, v in per_op.items()), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="out/bench-passes", help="where checkpoints and variants are cached")
    parser.add_argument("--models", default="roberta-qa,convbert-ner")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="add a per-op-type profile of each variant")
    parser.add_argument("--output", default="benchmarks/results/passes_cpu", help="writes OUTPUT.json and OUTPUT.md")
    parser.add_argument("--render", default=None, help="only re-render OUTPUT.md from this result JSON")
    args = parser.parse_args(argv)
    if args.render:
        Path(args.output).with_suffix(".md").write_text(markdown(json.loads(Path(args.render).read_text())))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": fingerprint(), "settings": {k: v for k, v in vars(args).items()},
                              "batch": 1, "seq": 128, "models": {}}
    for name in args.models.split(","):
        source = artifact_for(name, work)
        paths = variants(source, work, name)
        feed = bench_feed(source)
        sessions = {k: session(p, args.threads) for k, p in paths.items()}
        times = time_round_robin(sessions, feed, iters=args.iters, rounds=args.rounds, warmup=args.warmup)
        medians = {k: statistics.median(v) for k, v in times.items()}
        del sessions
        cpu = cpu_time_round_robin(paths, feed, iters=args.iters, rounds=args.rounds)
        cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
        entry: dict[str, Any] = {
            "median_ms": {k: round(v, 1) for k, v in medians.items()},
            "cpu_ms_1_thread_median": {k: round(v, 1) for k, v in cpu_medians.items()},
            "cpu_ms_1_thread_min": {k: round(min(v), 1) for k, v in cpu.items()},
            "cpu_ratio_to_ort_fp32": {k: round(v / cpu_medians["ort-fp32"], 3) for k, v in cpu_medians.items()},
            "cpu_ratio_to_ort_int8_dynamic": {k: round(v / cpu_medians["ort-int8-dynamic"], 3)
                                              for k, v in cpu_medians.items()},
            "p10_ms": {k: round(float(np.percentile(v, 10)), 1) for k, v in times.items()},
            "ratio_to_ort_fp32": {k: round(v / medians["ort-fp32"], 3) for k, v in medians.items()},
            "ratio_to_ort_int8_dynamic": {k: round(v / medians["ort-int8-dynamic"], 3) for k, v in medians.items()},
            "peer_figures_ms_from_issue": PEER.get(name, {}),
            "targets_ms_from_issue": TARGETS.get(name, {}),
            "fidelity_vs_ort_fp32": fidelity(source, paths),
        }
        # targets scaled to this run's load: the target / peer ratio applied to the peer measured here
        if name == "roberta-qa":
            entry["scaled_targets_ms"] = {"ef-fp32": round(medians["ort-fp32"] * 125 / 134, 1),
                                          "ef-int8-dynamic": round(medians["ort-int8-dynamic"] * 55 / 76, 1)}
        else:
            entry["scaled_targets_ms"] = {"ef-int8-dynamic": round(medians["ort-int8-dynamic"] * 100 / 166, 1)}
        if args.profile:
            entry["profile_ms_per_run"] = {k: profile(p, feed, 1) for k, p in paths.items()
                                           if k in ("ort-fp32", "ort-int8-dynamic", "ef-fp32", "ef-int8-dynamic")}
        result["models"][name] = entry
        print(json.dumps({name: [entry["median_ms"], entry["cpu_ms_1_thread_median"]]}), flush=True)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = portable(result)  # committed results name no path of this machine
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [f"# Graph passes on CPU (batch 1, seq 128, {result['settings']['threads']} threads)", "",
             (f"Machine: {machine['cpu']}, {machine['logical_cores']} logical cores, ISA {', '.join(machine['isa'])}; "
             f"onnxruntime {machine['onnxruntime']}. Load average at start / end: "
             f"{[round(x, 1) for x in machine['load_avg_at_start']]} / {[round(x, 1) for x in machine['load_avg_at_end']]} "
             "(shared machine: compare ratios within a run)."), ""]
    for name, entry in result["models"].items():
        lines += [f"## {name}", "", ("| variant | wall median ms (2 thr) | / ort-fp32 | / ort-int8-dyn | "
                                     "CPU ms 1 thr median (min) | / ort-fp32 | / ort-int8-dyn | min cosine | "
                                     "median SQNR dB |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for variant, ms in entry["median_ms"].items():
            fid = entry["fidelity_vs_ort_fp32"].get(variant, {})
            cos = f"{fid['min_cosine']:.5f}" if fid else "(reference)"
            sqnr = f"{fid['median_sqnr_db']:.1f}" if fid else ""
            lines.append(f"| {variant} | {ms} | {entry['ratio_to_ort_fp32'][variant]} | "
                         f"{entry['ratio_to_ort_int8_dynamic'][variant]} | {entry['cpu_ms_1_thread_median'][variant]} "
                         f"({entry['cpu_ms_1_thread_min'][variant]}) | {entry['cpu_ratio_to_ort_fp32'][variant]} | "
                         f"{entry['cpu_ratio_to_ort_int8_dynamic'][variant]} | {cos} | {sqnr} |")
        lines += ["", (f"Issue targets {entry['targets_ms_from_issue']} scaled to this run's peer: "
                  f"{entry['scaled_targets_ms']}."), ""]
        if "profile_ms_per_run" in entry:
            lines += ["Top ops per variant (ms per run, ORT profiling):", ""]
            for variant, ops in entry["profile_ms_per_run"].items():
                top = ", ".join(f"{op} {ms}" for op, ms in list(ops.items())[:8])
                lines.append(f"- {variant}: {top}")
            lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""INT8 / bf16 on CPU, engine x graph, measured in one process, interleaved (issue 12).

Graphs of one roberta-base-shaped QA model (random weights; build them with benchmarks/passes_cpu.py's
`artifact_for` and `encoderforge optimize`), each run on ONNX Runtime and/or OpenVINO:

    plain          the fp32 export                          ort, openvino f32, openvino bf16 (where native)
    ort-dynamic    onnxruntime's quantize_dynamic of it      ort
    ef-dynamic     optimize --precision int8-dynamic         ort
    ef-static-old  optimize --precision int8-static before issue 12 (int8 activations, shared Q/DQ)   ort
    ef-static      optimize --precision int8-static now      ort, openvino
    nncf-onnx      nncf.quantize of the ONNX graph (TRANSFORMER preset, same calibration feeds)  ort, openvino
    nncf-ov        nncf.quantize of the OpenVINO model                                            openvino

Latency: median per run at batch 1 and 8, sequence 128, variants round-robin. `--threads 1` times process CPU
time (robust to other processes on a shared machine); more threads time wall clock. Fidelity: start_logits vs
the plain graph on ONNX Runtime fp32, 20 held-out inputs (min cosine, median SQNR).

    python benchmarks/int8_cpu_engines.py --work out/bench-int8 --variants plain=...,ef-static=... --output R
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
ENGINES = {"plain": ("ort", "ov-f32", "ov-bf16"), "ort-dynamic": ("ort",), "ef-dynamic": ("ort",),
           "ef-static-old": ("ort",), "ef-static": ("ort", "ov-bf16"), "nncf-onnx": ("ort", "ov-bf16"),
           "nncf-ov": ("ov-bf16",)}


def ort_runner(path: str, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(names, feed)))


def ov_runner(path: str, threads: int, precision: str) -> Runner:
    import openvino as ov

    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": "1",
                                                     "INFERENCE_NUM_THREADS": str(threads),
                                                     "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    names = [o.get_any_name() for o in compiled.outputs]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request.infer(feed)
        return {n: np.array(request.get_tensor(n).data) for n in names}

    return run


def runners(variants: dict[str, str], threads: int, bf16: bool) -> tuple[dict[str, Runner], dict[str, str]]:
    """The runners that load, and for the others the first line of the engine's error."""
    built, failed = {}, {}
    for name, path in variants.items():
        for engine in ENGINES[name]:
            precision = "bf16" if engine == "ov-bf16" and bf16 else "f32"
            label = f"{name} @ ort" if engine == "ort" else f"{name} @ openvino-{precision}"
            if engine == "ort" and path.endswith(".xml"):
                continue
            try:
                built[label] = ort_runner(path, threads) if engine == "ort" else ov_runner(path, threads, precision)
            except RuntimeError as exc:
                failed[label] = " ".join(str(exc).split())[:300]
                print(f"{label}: cannot load: {failed[label]}", flush=True)
    return built, failed


def fidelity(source: Path, runs: dict[str, Runner], reference: Runner) -> dict[str, dict[str, float]]:
    from encoderforge.artifact import Artifact
    from encoderforge.fidelity import fidelity_feeds

    feeds = [{k: v for k, v in f.items() if k in ("input_ids", "attention_mask")}
             for f in fidelity_feeds(Artifact.load(source, verify=False), count=20, batch_size=1)]
    want = [reference(f)["start_logits"].ravel().astype(np.float64) for f in feeds]
    table = {}
    for name, run in runs.items():
        got = [run(f)["start_logits"].ravel().astype(np.float64) for f in feeds]
        cosines = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(want, got)]
        sqnr = [10 * np.log10(float(a @ a) / max(float((a - b) @ (a - b)), 1e-30)) for a, b in zip(want, got)]
        table[name] = {"min_cosine": min(cosines), "median_sqnr_db": float(np.median(sqnr))}
    return table


def latency(runs: dict[str, Runner], batch: int, vocab: int, *, rounds: int, iters: int, threads: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(5, vocab - 1, (batch, 128)).astype(np.int64),
            "attention_mask": np.ones((batch, 128), np.int64)}
    return round_robin_ms(runs, feed, rounds=rounds, iters=iters, threads=threads)


def round_robin_ms(runs: dict[str, Callable[[dict[str, np.ndarray]], Any]], feed: dict[str, np.ndarray], *,
                   rounds: int, iters: int, threads: int) -> dict[str, float]:
    """Median ms per call, the runners round-robin, one untimed call opening each runner's turn: process CPU
    time on one thread (what stays comparable on a shared machine), wall clock on more."""
    clock = time.process_time if threads == 1 else time.perf_counter
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, run in runs.items():
            run(feed)
            for _ in range(iters):
                start = clock()
                run(feed)
                times[name].append((clock() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the fp32 artifact (for held-out fidelity feeds)")
    parser.add_argument("--variants", required=True, help="name=path,... (names: " + ", ".join(ENGINES) + ")")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--output", required=True, help="writes OUTPUT.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from passes_cpu import fingerprint

    from encoderforge.runtime.backends.openvino import cpu_flags, cpu_precision

    variants = dict(item.split("=", 1) for item in args.variants.split(","))
    bf16 = cpu_precision() == "bf16"
    runs, failed = runners(variants, args.threads, bf16)
    source = Path(args.source)
    vocab = int(json.loads((source / "config.json").read_text())["vocab_size"])
    result: dict[str, Any] = {"fingerprint": {**fingerprint(), "bf16_flags": sorted(cpu_flags() & {
        "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"})}, "threads": args.threads,
        "clock": "process CPU time" if args.threads == 1 else "wall", "load_failures": failed, "latency_ms": {}}
    for batch in (int(b) for b in args.batches.split(",")):
        result["latency_ms"][f"b{batch}"] = latency(runs, batch, vocab, rounds=args.rounds, iters=args.iters,
                                                    threads=args.threads)
        print(json.dumps(result["latency_ms"][f"b{batch}"], indent=1), flush=True)
    result["fidelity"] = fidelity(source, runs, ort_runner(variants["plain"], os.cpu_count() or 1))
    Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["fidelity"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

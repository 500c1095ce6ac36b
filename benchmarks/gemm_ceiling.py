"""What this CPU's GEMM kernels sustain at roberta-base's shapes, per engine x precision: the ceiling a whole model
can approach (issue 12's physical floor).

roberta-base at s128 is 22.35 GFLOP per sequence, 21.7 of them in its linear layers (per layer: Q, K, V and the
attention output 768 x 768, the feed-forward 768 x 3072 and back). One graph per (engine, precision, shape) runs a
single MatMul of M = batch x 128 rows, timed as int8_cpu_engines.py times (round-robin; CPU time on one thread).
The result is GOP/s and the whole-model latency that rate would give if every linear layer ran at it and nothing
else took time (the attention and elementwise work left out: a floor, not a forecast).

    fp32   MatMul(x, W)                                   onnxruntime, openvino (f32)
    bf16   the same graph, OpenVINO inference precision bf16 (CPUs with AVX512-BF16 / AMX)
    int8   QuantizeLinear(x) u8 -> DequantizeLinear -> MatMul(DequantizeLinear(W s8, per channel)): OpenVINO runs
           it as one int8 FullyConnected (with the activation's quantization, as in a quantized model);
           onnxruntime's QDQ fusions turn it into its u8 x s8 integer kernel

`--model-results` (an `encoderforge bench` results.json of roberta-base at s128, same thread count, run just
before) adds each engine's whole-model rate (22.35 GFLOP per sequence / p50) beside the fastest GEMM rate.

    python benchmarks/gemm_ceiling.py --output benchmarks/results/<machine>/gemm_ceiling [--model-results R]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEQ = 128
MODEL_GFLOP = 22.35  # roberta-base per sequence at s128: the linear layers' 21.7 and attention's 0.6
HIDDEN, FFN, LAYERS = 768, 3072, 12
# (K, N, count per layer) of roberta-base's linear layers
LINEAR = {"qkvo": (HIDDEN, HIDDEN, 4), "ffn-up": (HIDDEN, FFN, 1), "ffn-down": (FFN, HIDDEN, 1)}
Runner = Callable[[dict[str, np.ndarray]], Any]  # no copy of the outputs: it would be timed too


def gemm_graph(rows: int, k: int, n: int, int8: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = rng.normal(scale=0.05, size=(k, n)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])
    if not int8:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        inits = [numpy_helper.from_array(weight, "w")]
    else:
        scale = np.abs(weight).max(axis=0) / 64  # 7-bit weights: exact on every x86 kernel
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
                 helper.make_node("MatMul", ["xd", "wd"], ["y"])]
        inits = [numpy_helper.from_array(np.array(4 / 255, np.float32), "xs"),
                 numpy_helper.from_array(np.array(128, np.uint8), "xz"),
                 numpy_helper.from_array(np.round(weight / scale).astype(np.int8), "wq"),
                 numpy_helper.from_array(scale.astype(np.float32), "ws"),
                 numpy_helper.from_array(np.zeros(n, np.int8), "wz")]
    graph = helper.make_graph(nodes, "gemm", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def ort_runner(path: str, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)


def ov_runner(path: str, threads: int, precision: str) -> Runner:
    import openvino as ov

    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": "1",
                                                     "INFERENCE_NUM_THREADS": str(threads),
                                                     "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda feed: request.infer(feed)


def variants(rows: int, workdir: Path, threads: int, bf16: bool) -> dict[str, dict[str, Runner]]:
    """shape -> 'engine precision' -> runner, for one row count."""
    found: dict[str, dict[str, Runner]] = {}
    for shape, (k, n, _) in LINEAR.items():
        paths = {}
        for kind in ("fp32", "int8"):
            paths[kind] = str(workdir / f"{shape}-{rows}-{kind}.onnx")
            onnx.save(gemm_graph(rows, k, n, kind == "int8"), paths[kind])
        found[shape] = {"onnxruntime fp32": ort_runner(paths["fp32"], threads),
                        "onnxruntime int8": ort_runner(paths["int8"], threads),
                        "openvino fp32": ov_runner(paths["fp32"], threads, "f32"),
                        "openvino int8": ov_runner(paths["int8"], threads, "bf16" if bf16 else "f32")}
        if bf16:
            found[shape]["openvino bf16"] = ov_runner(paths["fp32"], threads, "bf16")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--model-results", default=None, help="a bench results.json of roberta-base at s128")
    parser.add_argument("--output", required=True, help="writes OUTPUT.json and OUTPUT.md")
    args = parser.parse_args(argv)
    from int8_cpu_engines import round_robin_ms

    from encoderforge.bench.fingerprint import fingerprint
    from encoderforge.runtime.backends.openvino import cpu_precision

    bf16 = cpu_precision() == "bf16"
    result: dict[str, Any] = {"fingerprint": fingerprint({}, threads=args.threads), "threads": args.threads,
                              "clock": "process CPU time" if args.threads == 1 else "wall",
                              "gop_per_s": {}, "linear_floor_ms": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for batch in (int(b) for b in args.batches.split(",")):
            rows = batch * SEQ
            rates: dict[str, dict[str, float]] = {}
            floor: dict[str, float] = {}
            for shape, runs in variants(rows, Path(scratch), args.threads, bf16).items():
                k, n, count = LINEAR[shape]
                ops = 2 * rows * k * n
                feed = {"x": np.random.default_rng(1).normal(size=(rows, k)).astype(np.float32)}
                ms = round_robin_ms(runs, feed, rounds=args.rounds, iters=args.iters, threads=args.threads)
                rates[shape] = {name: round(ops / t / 1e6, 1) for name, t in ms.items()}
                for name, t in ms.items():
                    floor[name] = floor.get(name, 0.0) + t * count * LAYERS
                print(f"b{batch} {shape}: " + ", ".join(f"{k} {v} GOP/s" for k, v in rates[shape].items()),
                      flush=True)
            result["gop_per_s"][f"b{batch}"] = rates
            result["linear_floor_ms"][f"b{batch}"] = {name: round(ms, 1) for name, ms in floor.items()}
    if args.model_results:
        result["model_gop_per_s"] = model_rates(json.loads(Path(args.model_results).read_text()))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    output.with_suffix(".md").write_text(report(result))
    print(report(result))
    return 0


def model_rates(bench: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """batch -> engine -> p50 ms and GOP/s, of the bench's model-only s128 points."""
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for row in bench["results"]:
        if row.get("mode") == "model" and row.get("seq_len") == SEQ and "timing" in row:
            ms = row["timing"]["p50_ms"]
            rates.setdefault(f"b{row['batch_size']}", {})[row["engine"]] = {
                "p50_ms": ms, "gop_per_s": round(MODEL_GFLOP * row["batch_size"] / ms * 1e3, 1)}
    return rates


def report(result: dict[str, Any]) -> str:
    cpu = result["fingerprint"]["cpu"]
    header = (f"{cpu['model']} (family {cpu['family']}, {cpu['kind']}; {' '.join(cpu['isa'])}), "
              f"{result['threads']} thread(s), {result['clock']}; GOP/s per linear-layer shape, and the whole "
              "model's linear layers at those rates (ms per call).")
    lines = [f"# GEMM ceiling at roberta-base's shapes (s{SEQ})", "", header, "",
             "| batch | engine precision | " + " | ".join(LINEAR) + " | linear layers ms |",
             "|---|---|" + "---|" * (len(LINEAR) + 1)]
    for batch, rates in result["gop_per_s"].items():
        for name, ms in result["linear_floor_ms"][batch].items():
            lines.append(f"| {batch} | {name} | " + " | ".join(str(rates[s][name]) for s in LINEAR) + f" | {ms} |")
    if "model_gop_per_s" in result:
        lines += ["", (f"Whole model ({MODEL_GFLOP} GFLOP per sequence): p50 (wall clock) of the bench run just "
                       "before this one:"), "",
                  "| batch | engine | p50 ms | GOP/s | of the fastest int8 GEMM rate |", "|---|---|---|---|---|"]
        for batch, engines in result["model_gop_per_s"].items():
            fastest = max(rate for by_engine in result["gop_per_s"][batch].values()
                          for engine, rate in by_engine.items() if engine.endswith("int8"))
            for name, row in sorted(engines.items(), key=lambda item: item[1]["p50_ms"]):
                lines.append(f"| {batch} | {name} | {row['p50_ms']:.1f} | {row['gop_per_s']} | "
                             f"{row['gop_per_s'] / fastest:.0%} of {fastest} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

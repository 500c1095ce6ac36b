"""Latency benchmarks against peers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 1,8,32") from None
    if not values:
        raise argparse.ArgumentTypeError("empty list; pass comma-separated integers, e.g. 1,8,32")
    return values


def _cmd_bench(args: argparse.Namespace) -> int:
    from encoderforge import bench

    baseline = bench.load_result(Path(args.baseline)) if args.baseline else None  # fail before the long run
    modes: tuple[Literal["model", "e2e"], ...] = ("model", "e2e") if args.mode == "both" else (args.mode,)
    compare = tuple(c.strip() for c in args.compare.split(",") if c.strip()) if args.compare else ()
    config = bench.BenchConfig(
        artifacts=tuple(Path(a) for a in args.artifacts), batch_sizes=args.batch_sizes, seq_lens=args.seq_lens,
        modes=modes, warmup=args.warmup, iters=args.iters, max_seconds=args.max_seconds or None, rounds=args.rounds,
        compare=compare, threads=args.threads, optimum_python=args.optimum_python, optimum_intel_python=args.optimum_intel_python,
        progress=not args.no_progress,
        fidelity_samples=args.fidelity_samples,
    )
    result = bench.run_bench(config)
    status = 0
    if baseline is not None:
        result["regression"] = bench.check_regression(result, baseline, threshold=args.threshold)
        status = 1 if result["regression"]["regressed"] else 0
    print(bench.console(result))
    if baseline is not None:
        print("\n" + "\n".join(bench.regression_lines(result["regression"])))
    if args.report:
        for path in bench.write_report(result, Path(args.report)):
            print(f"wrote {path}")
    return status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="time artifacts and their peers (torch, plain onnxruntime, ...) side by side")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifact directories to measure")
    p.add_argument("--batch-sizes", type=_int_list, default=(1, 8), help="comma-separated (default 1,8)")
    p.add_argument("--seq-lens", type=_int_list, default=(16, 128), help="tokens per sequence (default 16,128)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per point (default 10)")
    p.add_argument("--iters", type=int, default=100, help="timed calls per point (default 100)")
    p.add_argument("--max-seconds", type=float, default=15.0,
                   help="time budget per engine and point; stops early after >= 5 calls (0: no budget)")
    p.add_argument("--rounds", type=int, default=3,
                   help="split each point's timed calls and budget into rounds, engines interleaved in each, so "
                        "a burst of outside load spreads over every engine (default 3; 1: one block per engine)")
    p.add_argument("--compare", default="", help="peers, comma-separated: torch,ort-baseline,sentence-transformers,"
                   "optimum,optimum-intel,openvino,openvino-nncf-int8")
    p.add_argument("--mode", choices=["model", "e2e", "both"], default="both",
                   help="model-only (graph), end-to-end (text in, answer out) or both (default)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every engine (default: usable cores)")
    p.add_argument("--report", default=None, metavar="DIR", help="write results.json, results.md and PNG plots here")
    p.add_argument("--baseline", default=None, metavar="JSON", help="flag slowdowns against an earlier results.json")
    p.add_argument("--threshold", type=float, default=0.1, help="slowdown flagged by --baseline (default 0.1 = 10%%)")
    p.add_argument("--optimum-python", default=None, metavar="PYTHON",
                   help="python of a separate environment with optimum-onnx[onnxruntime] (for --compare optimum)")
    p.add_argument("--optimum-intel-python", default=None, metavar="PYTHON",
                   help="python of a separate environment with optimum-intel[openvino,nncf] (for --compare "
                        "optimum-intel)")
    p.add_argument("--fidelity-samples", type=int, default=20, metavar="N",
                   help="held-out feeds each engine's outputs are checked on against the fp32 reference (0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_bench)


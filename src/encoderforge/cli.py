"""Command line: parse arguments, build one config object, call one API function. Nothing else.

Every EncoderForgeError is printed as one line (`error: ...`) and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from encoderforge import __version__
from encoderforge.errors import EncoderForgeError

Handler = Callable[[argparse.Namespace], int]


def _cmd_export(args: argparse.Namespace) -> int:
    from encoderforge.exporters import ExportConfig, export
    from encoderforge.summary import validation_lines

    config = ExportConfig(
        model=args.model, task=args.task, output=Path(args.output), exporter=args.exporter, opset=args.opset,
        tolerance=args.tolerance, force=args.force, trust_remote_code=args.trust_remote_code,
    )
    artifact = export(config)
    print(f"wrote {artifact.path} ({artifact.family}, {artifact.task})")
    print("\n".join(validation_lines(artifact.manifest["validation"])))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from encoderforge.artifact import Artifact
    from encoderforge.summary import describe

    artifact = Artifact.load(args.artifact, verify=not args.no_verify)
    print(json.dumps(artifact.manifest, indent=2) if args.json else describe(artifact))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from encoderforge.demo import run_demo
    from encoderforge.summary import validation_lines

    for artifact in run_demo(Path(args.output), force=args.force):
        print(f"\n{artifact.path}: {artifact.manifest['source']} ({artifact.family}, {artifact.task}), "
              f"exported in {artifact.manifest['export_seconds']} s")
        print("\n".join(validation_lines(artifact.manifest["validation"])))
    return 0


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from encoderforge.synthetic import build_checkpoint

    path = build_checkpoint(args.family, args.task, Path(args.output), size=args.size, seed=args.seed)
    print(f"wrote random-weight {args.size} {args.family} checkpoint for {args.task} to {path}")
    return 0


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
        modes=modes, warmup=args.warmup, iters=args.iters, max_seconds=args.max_seconds or None, compare=compare,
        threads=args.threads, optimum_python=args.optimum_python, progress=not args.no_progress,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encoderforge", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"encoderforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("export", help="export a model + task head to a validated ONNX artifact")
    p.add_argument("--model", required=True, help="hub id or local directory (save_pretrained output)")
    p.add_argument("--task", required=True, help="task head: pipeline name or alias (qa, ner, cls, mlm, mc, embed, causal-lm)")
    p.add_argument("--output", required=True, help="artifact directory to create")
    p.add_argument("--exporter", choices=["auto", "torchscript", "dynamo"], default="auto")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tolerance", type=float, default=None, help="max abs diff vs PyTorch (default: family's, 1e-4)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom modeling code (off by default)")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("inspect", help="print an artifact's manifest: inputs, outputs, validation, sizes")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true", help="print the raw manifest")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the files")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("demo", help="export the bundled MiniLM and a roberta-base-shaped QA model, print validation")
    p.add_argument("--output", default="out/demo")
    p.add_argument("--force", action="store_true")
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("synthesize", help="write a random-weight checkpoint with a locally trained tokenizer")
    p.add_argument("--family", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--size", choices=["tiny", "base"], default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True)
    p.set_defaults(handler=_cmd_synthesize)

    p = sub.add_parser("bench", help="time artifacts and their peers (torch, plain onnxruntime, ...) side by side")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifact directories to measure")
    p.add_argument("--batch-sizes", type=_int_list, default=(1, 8), help="comma-separated (default 1,8)")
    p.add_argument("--seq-lens", type=_int_list, default=(16, 128), help="tokens per sequence (default 16,128)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per point (default 10)")
    p.add_argument("--iters", type=int, default=100, help="timed calls per point (default 100)")
    p.add_argument("--max-seconds", type=float, default=15.0,
                   help="time budget per engine and point; stops early after >= 5 calls (0: no budget)")
    p.add_argument("--compare", default="", help="peers, comma-separated: torch,ort-baseline,sentence-transformers,"
                   "optimum")
    p.add_argument("--mode", choices=["model", "e2e", "both"], default="both",
                   help="model-only (graph), end-to-end (text in, answer out) or both (default)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every engine (default: usable cores)")
    p.add_argument("--report", default=None, metavar="DIR", help="write results.json, results.md and PNG plots here")
    p.add_argument("--baseline", default=None, metavar="JSON", help="flag slowdowns against an earlier results.json")
    p.add_argument("--threshold", type=float, default=0.1, help="slowdown flagged by --baseline (default 0.1 = 10%%)")
    p.add_argument("--optimum-python", default=None, metavar="PYTHON",
                   help="python of a separate environment with optimum-onnx[onnxruntime] (for --compare optimum)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    handler: Handler = args.handler
    try:
        return handler(args)
    except EncoderForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Artifacts: export (optionally optimized), inspect, demo, synthesize."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from encoderforge.manifest.enums import PRECISION_CHOICES, Target
from encoderforge.tasks import TASKS


def _cmd_export(args: argparse.Namespace) -> int:
    from encoderforge.exporters import ExportConfig, OptimizeSettings, export
    from encoderforge.summary import validation_lines

    wants_optimize = args.target is not None or args.precision is not None
    optimize = OptimizeSettings(
        target=args.target or "cpu", precision=args.precision,
        calibration_data=Path(args.calibration_data) if args.calibration_data else None,
        max_accuracy_drop=args.max_accuracy_drop,
    ) if wants_optimize else None
    config = ExportConfig(
        model=args.model, task=args.task, output=Path(args.output), exporter=args.exporter, opset=args.opset,
        tolerance=args.tolerance, force=args.force, trust_remote_code=args.trust_remote_code,
        allow_untrained_head=args.allow_untrained_head,
        with_past=args.with_past, optimize=optimize,
    )
    artifact = export(config)
    manifest = artifact.manifest
    print(f"wrote {artifact.path} ({artifact.family}, {artifact.task}, {manifest.precision})")
    print("\n".join(validation_lines(manifest.validation)))
    if manifest.fidelity is not None:
        print(f"fidelity vs fp32 after {manifest.precision} for {manifest.target}: "
              f"min cosine {manifest.fidelity['min_cosine']:.6f}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from encoderforge.artifact import Artifact
    from encoderforge.summary import describe

    artifact = Artifact.load(args.artifact, verify=not args.no_verify)
    print(json.dumps(artifact.manifest.to_json(), indent=2) if args.json else describe(artifact))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from encoderforge.cli.optimize import selection_lines
    from encoderforge.demo import CONTEXT, QUESTION, SHAPES, run_demo
    from encoderforge.summary import validation_lines

    result = run_demo(Path(args.output), force=args.force)
    for artifact in result.artifacts:
        print(f"\n{artifact.path}: {artifact.manifest.source} ({artifact.family}, {artifact.task}), "
              f"exported in {artifact.manifest.export_seconds} s")
        print("\n".join(validation_lines(artifact.manifest.validation)))
    optimized = result.optimized
    selection = optimized.manifest.selection
    print(f"\n{optimized.path}: optimize --precision auto in {optimized.manifest.optimize_seconds} s")
    if selection is not None:
        print("\n".join(selection_lines(selection)))
    print(f"\nQ: {QUESTION}\nC: {CONTEXT}\nA: {result.answer!r} (score {result.score:.3f}; "
          "random weights, so the span is arbitrary: the point is the path from text to answer)")
    shapes = "".join(f"{f'batch {b} p50 (vs torch)':>24}" for b, _ in SHAPES)
    print(f"\nlatency here, model only, sequence {SHAPES[0][1]}:\n  {'engine':<48}{shapes}")
    torch_ms = result.latency[0].p50_ms
    for row in result.latency:
        cells = "".join(f"{f'{ms:.1f} ms ({base / ms:.1f}x)':>24}" for ms, base in zip(row.p50_ms, torch_ms))
        print(f"  {row.engine:<48}{cells}")
    return 0


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from encoderforge.synthetic import build_checkpoint

    path = build_checkpoint(args.family, args.task, Path(args.output), size=args.size, seed=args.seed)
    print(f"wrote random-weight {args.size} {args.family} checkpoint for {args.task} to {path}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="export a model + task head to a validated ONNX artifact")
    p.add_argument("--model", required=True, help="hub id or local directory (save_pretrained output)")
    p.add_argument("--task", required=True, help=f"task head, by pipeline name or alias: {', '.join(TASKS.choices())}")
    p.add_argument("--output", required=True, help="artifact directory to create")
    p.add_argument("--exporter", choices=["auto", "torchscript", "dynamo"], default="auto")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17 TorchScript, 18 dynamo)")
    p.add_argument("--tolerance", type=float, default=None, help="max abs diff vs PyTorch (default: family's, 1e-4)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom modeling code (off by default)")
    p.add_argument("--allow-untrained-head", action="store_true",
                   help="export even when the checkpoint has no weights for the head (random answers; recorded in "
                        "the manifest as untrained_weights), e.g. for latency tests")
    p.add_argument("--with-past", action="store_true",
                   help="text-generation: also write model_with_past.onnx (past key/values in and out) for fast decoding")
    p.add_argument("--target", default=None,
                   help=f"{' | '.join(t.value for t in Target)}: optimize right after export (as `encoderforge optimize`)")
    p.add_argument("--precision", default=None,
                   help=f"{' | '.join(PRECISION_CHOICES)}: optimize right after export (with --target only: auto on cpu, "
                        "fp32 elsewhere)")
    p.add_argument("--calibration-data", default=None, help="int8-static: text file or JSONL for calibration")
    p.add_argument("--max-accuracy-drop", type=float, default=None,
                   help="bound on 1 - min cosine vs fp32 (default per precision); runs the sensitivity sweep for int8-static")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("inspect", help="print an artifact's manifest: inputs, outputs, validation, sizes")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true", help="print the raw manifest")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the files")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("demo", help="export the bundled MiniLM and a roberta-base-shaped QA model, optimize the QA "
                                    "model for this CPU, answer a question, time it against PyTorch and ONNX Runtime")
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

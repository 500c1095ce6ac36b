"""Graph passes: fuse / quantize an artifact into a new one."""

from __future__ import annotations

import argparse
from pathlib import Path

from encoderforge.manifest import Selection, Target
from encoderforge.manifest.enums import PRECISION_CHOICES


def _cmd_optimize(args: argparse.Namespace) -> int:
    from encoderforge.graph_passes import AutoOptions, OptimizeConfig, optimize

    options = {k: v for k, v in (("per_channel", args.per_channel), ("reduce_range", args.reduce_range)) if v is not None}
    config = OptimizeConfig(
        artifact=Path(args.artifact), output=Path(args.output), target=args.target, precision=args.precision,
        calibration_data=args.calibration_data, calibration_method=args.calibration_method,
        calibration_samples=args.calibration_samples, max_accuracy_drop=args.max_accuracy_drop, force=args.force,
        options=options, auto=AutoOptions() if args.auto_seconds is None else AutoOptions(seconds=args.auto_seconds),
    )
    artifact = optimize(config)
    manifest = artifact.manifest
    print(f"wrote {artifact.path} ({artifact.family}, {artifact.task}, {manifest.precision} for {manifest.target})")
    if manifest.selection is not None:
        for line in selection_lines(manifest.selection):
            print(line)
    for result in manifest.passes:
        counts = ", ".join(f"{op} {n}" + (f"/{result.expected[op]}" if op in result.expected else "")
                           for op, n in result.counts.items())
        short = "" if not result.shortfalls else f"  SHORTFALL: {', '.join(result.shortfalls)}"
        print(f"  pass {result.name}: {counts or 'no counts'}{short}")
    fid = manifest.fidelity or {}
    agreement = "n/a" if fid["argmax_agreement"] is None else f"{fid['argmax_agreement']:.3f}"
    sqnr = "inf" if fid["median_sqnr_db"] is None else f"{fid['median_sqnr_db']:.1f} dB"
    print(f"  fidelity vs fp32 on {fid['samples']} held-out inputs: min cosine {fid['min_cosine']:.6f}, "
          f"median SQNR {sqnr}, max abs diff {fid['max_abs_diff']:.3g}, argmax agreement {agreement} "
          f"(bound: accuracy drop <= {fid['bound']['max_accuracy_drop']:g})")
    return 0


def selection_lines(selection: Selection) -> list[str]:
    """The auto table as the terminal shows it: one row per candidate, the choice marked."""
    shapes = list(dict.fromkeys((p.batch_size, p.sequence_length) for c in selection.candidates for p in c.latency))
    lines = [(f"  auto on {selection.cpu_model} ({selection.cpu_kind}), p50 per batch x sequence, "
             f"bound: accuracy drop <= {selection.max_accuracy_drop:g}")]
    header = f"    {'engine':<30} {'precision':<13}" + "".join(f"{f'b{b} x {n}':>11}" for b, n in shapes)
    lines.append(header + f"  {'drop':>8}  verdict")
    for c in selection.candidates:
        times = "".join(f"{ms:>8.2f} ms" if (ms := c.p50(b, n)) is not None else f"{'-':>11}" for b, n in shapes)
        drop = "-" if c.accuracy_drop is None else f"{c.accuracy_drop:.2g}"
        verdict = "CHOSEN" if c.rejected is None else c.rejected
        engine = f"{c.backend} ({', '.join(c.variants)})" if c.variants else c.backend
        lines.append(f"    {engine:<30} {c.precision:<13}{times}  {drop:>8}  {verdict}")
    return lines


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("optimize", help="fuse / quantize an artifact for a target; writes a new artifact with a fidelity report")
    p.add_argument("artifact", help="source artifact directory (fp32, from `encoderforge export`)")
    p.add_argument("--output", required=True, help="new artifact directory")
    p.add_argument("--target", default="cpu", help=f"{' | '.join(t.value for t in Target)} (default cpu)")
    p.add_argument("--precision", default=None,
                   help=f"{' | '.join(PRECISION_CHOICES)} (default: auto on cpu: the fastest engine x precision measured here "
                        "within --max-accuracy-drop; fp32 elsewhere)")
    p.add_argument("--calibration-data", default=None, help="text or JSONL file for int8-static / fp16 ranges")
    p.add_argument("--calibration-method", default="minmax", help="minmax | entropy | percentile (int8-static)")
    p.add_argument("--calibration-samples", type=int, default=None, help="calibration inputs (default: the pass's)")
    p.add_argument("--max-accuracy-drop", type=float, default=None,
                   help="bound on 1 - min cosine vs fp32 on held-out text (default: 1e-4 fp32, 1e-3 fp16, 1e-2 int8, "
                        "5e-3 auto); "
                        "a result beyond it fails")
    p.add_argument("--per-channel", dest="per_channel", action=argparse.BooleanOptionalAction, default=None,
                   help="int8-dynamic: per-channel weight scales (default on)")
    p.add_argument("--reduce-range", dest="reduce_range", action=argparse.BooleanOptionalAction, default=None,
                   help="int8-dynamic and cpu int8-static: 7-bit weights (default: on only for CPUs "
                        "without VNNI, whose int8 kernels saturate on full-range weights)")
    p.add_argument("--auto-seconds", type=float, default=None,
                   help="auto: timing budget per candidate and (batch, sequence) shape (default 1.5 s)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(handler=_cmd_optimize)

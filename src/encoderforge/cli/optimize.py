"""Graph passes: fuse / quantize an artifact into a new one."""

from __future__ import annotations

import argparse
from pathlib import Path

from encoderforge.manifest import Precision, Target


def _cmd_optimize(args: argparse.Namespace) -> int:
    from encoderforge.graph_passes import OptimizeConfig, optimize

    options = {k: v for k, v in (("per_channel", args.per_channel), ("reduce_range", args.reduce_range)) if v is not None}
    config = OptimizeConfig(
        artifact=Path(args.artifact), output=Path(args.output), target=args.target, precision=args.precision,
        calibration_data=args.calibration_data, calibration_method=args.calibration_method,
        calibration_samples=args.calibration_samples, max_accuracy_drop=args.max_accuracy_drop, force=args.force,
        options=options,
    )
    artifact = optimize(config)
    manifest = artifact.manifest
    print(f"wrote {artifact.path} ({artifact.family}, {artifact.task}, {manifest.precision} for {manifest.target})")
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("optimize", help="fuse / quantize an artifact for a target; writes a new artifact with a fidelity report")
    p.add_argument("artifact", help="source artifact directory (fp32, from `encoderforge export`)")
    p.add_argument("--output", required=True, help="new artifact directory")
    p.add_argument("--target", default="cpu", help=f"{' | '.join(t.value for t in Target)} (default cpu)")
    p.add_argument("--precision", default="fp32", help=f"{' | '.join(p.value for p in Precision)} (default fp32)")
    p.add_argument("--calibration-data", default=None, help="text or JSONL file for int8-static / fp16 ranges")
    p.add_argument("--calibration-method", default="minmax", help="minmax | entropy | percentile (int8-static)")
    p.add_argument("--calibration-samples", type=int, default=None, help="calibration inputs (default: the pass's)")
    p.add_argument("--max-accuracy-drop", type=float, default=None,
                   help="bound on 1 - min cosine vs fp32 on held-out text (default: 1e-4 fp32, 1e-3 fp16, 1e-2 int8); "
                        "a result beyond it fails")
    p.add_argument("--per-channel", dest="per_channel", action=argparse.BooleanOptionalAction, default=None,
                   help="int8-dynamic: per-channel weight scales (default on)")
    p.add_argument("--reduce-range", dest="reduce_range", action=argparse.BooleanOptionalAction, default=None,
                   help="int8-dynamic: 7-bit weights (default: on only for CPUs without VNNI)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(handler=_cmd_optimize)

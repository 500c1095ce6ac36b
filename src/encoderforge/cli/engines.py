"""TensorRT engines."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from encoderforge.engines import BuildSettings, EngineConfig, build_engine

    settings = BuildSettings(
        typing=args.typing, timing_cache=Path(args.timing_cache).expanduser() if args.timing_cache else None,
        workspace_gib=args.workspace, optimization_level=args.optimization_level,
    )
    result = build_engine(EngineConfig(
        artifact=Path(args.artifact), profiles=args.profiles, settings=settings, force=args.force,
        validate=not args.no_validate, min_cosine=args.min_cosine, device_id=args.device_id,
    ))
    key = result.entry.key
    state = "up to date" if result.cached else f"built in {result.entry.build_seconds} s"
    print(f"{result.path}: {state} ({key['gpu']}, compute {key['compute_capability']}, TensorRT {key['tensorrt']}, "
          f"profiles {key['profiles']})")
    report = result.entry.validation
    if report:
        print(f"validation vs the ONNX graph: {'PASSED' if report['passed'] else 'FAILED'}, min cosine "
              f"{report['min_cosine']:.6f} (required {report['min_cosine_required']}), "
              f"max abs diff {report['max_abs_diff']:.2e}, {len(report['cases'])} cases")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from encoderforge.engines.profiles import DEFAULT_PROFILES

    p = sub.add_parser("build-engine", help="build, validate and record a TensorRT engine for an artifact (needs a GPU)")
    p.add_argument("artifact", help="artifact directory (its graph's precision is used: fp16 casts, INT8 Q/DQ)")
    p.add_argument("--profiles", default=None,
                   help=f"optimization profiles as MAXBATCHxMAXSEQ buckets (default {DEFAULT_PROFILES}, "
                        "capped at the model's max length)")
    p.add_argument("--timing-cache", default=None, help="timing cache file, read and updated (e.g. ~/.cache/encoderforge/tc)")
    p.add_argument("--typing", choices=["strong", "weak"], default="strong",
                   help="strong: precision from the graph (TensorRT 10 and 11); weak: builder flags (TensorRT 10 only)")
    p.add_argument("--workspace", type=float, default=None, help="workspace limit in GiB (default: TensorRT's)")
    p.add_argument("--optimization-level", type=int, default=None, help="builder optimization level 0..5")
    p.add_argument("--min-cosine", type=float, default=None, help="validation floor (default by precision)")
    p.add_argument("--no-validate", action="store_true", help="skip validation against the ONNX graph")
    p.add_argument("--device-id", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even when an engine with the same key exists")
    p.set_defaults(handler=_cmd_build_engine)

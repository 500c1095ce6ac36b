"""Command line: parse arguments, build one config object, call one API function. Nothing else.

Every EncoderForgeError is printed as one line (`error: ...`) and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

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

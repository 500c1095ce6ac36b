"""Command line: parse arguments, build one config object, call one API function. Nothing else.

One module per command group registers its subcommands. Every EncoderForgeError is printed as one line
(`error: ...`) and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from encoderforge import __version__
from encoderforge.cli import bench, engines, export, optimize, run, serving
from encoderforge.errors import EncoderForgeError

Handler = Callable[[argparse.Namespace], int]
COMMAND_GROUPS = (export, run, optimize, bench, engines, serving)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encoderforge", description="Export, optimize, serve and benchmark "
                                     "Hugging Face encoders as validated ONNX artifacts.")
    parser.add_argument("--version", action="version", version=f"encoderforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
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

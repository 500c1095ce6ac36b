"""Serve requests from the command line: one (--text ...) or a JSONL file."""

from __future__ import annotations

import argparse
import json


def _cmd_run(args: argparse.Namespace) -> int:
    """Serve one request (--text, --prompt/--choice, --question/--context) or a JSONL file of them."""
    from encoderforge.errors import InputError
    from encoderforge.runtime.requests import RunConfig, run_requests

    flags = {"top_k": args.top_k, "aggregation_strategy": args.aggregation_strategy, "pooling": args.pooling,
             "function_to_apply": args.function_to_apply, "normalize": args.normalize,
             "targets": args.targets.split(",") if args.targets is not None else None,
             "ignore_labels": [x for x in args.ignore_labels.split(",") if x] if args.ignore_labels is not None else None}
    options = {k: v for k, v in flags.items() if v is not None}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep:
            raise InputError(f"--option {item!r} is not KEY=VALUE (VALUE as JSON, e.g. --option max_new_tokens=20)")
        try:
            options[key.strip().replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = raw
    fields = {"text": args.text, "text_pair": args.text_pair, "prompt": args.prompt, "choices": args.choice,
              "question": args.question, "context": args.context}
    single = {k: v for k, v in fields.items() if v is not None}
    return run_requests(RunConfig(
        artifact=args.artifact, device=args.device, verify=not args.no_verify, per_token=args.per_token,
        options=options, single=single, input=args.input, output=args.output, batch_size=args.batch_size,
        progress=not args.no_progress,
    ))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run an artifact's pipeline on --text (JSON out) or a JSONL file (batch)")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("--text", help="the input text (feature-extraction: prints its sentence embedding)")
    p.add_argument("--text-pair", help="text-classification: second text of a pair")
    p.add_argument("--prompt", help="multiple-choice: the prompt")
    p.add_argument("--choice", action="append", help="multiple-choice: one choice (repeat the flag)")
    p.add_argument("--question", help="question-answering: the question")
    p.add_argument("--context", help="question-answering: the context")
    p.add_argument("--input", help="JSONL file, one object of the pipeline's arguments per line ({\"text\": ...})")
    p.add_argument("--output", help="write JSON (JSONL with --input) here instead of stdout")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--aggregation-strategy", choices=["none", "simple", "first", "average", "max"], default=None)
    p.add_argument("--ignore-labels", default=None, help="token-classification: comma-separated (default O)")
    p.add_argument("--function-to-apply", choices=["softmax", "sigmoid", "none"], default=None)
    p.add_argument("--targets", default=None, help="fill-mask: comma-separated candidate tokens")
    p.add_argument("--pooling", choices=["mean", "cls", "max"], default=None, help="feature-extraction pooling")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="feature-extraction: L2-normalize (default: the artifact's setting)")
    p.add_argument("--per-token", action="store_true", help="feature-extraction: per-token states, not encode()")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other pipeline option, VALUE as JSON (e.g. --option max_answer_len=30)")
    p.add_argument("--batch-size", type=int, default=32, help="JSONL lines per batch (default 32)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=_cmd_run)

"""Serve requests from the command line: one (--text ...) or a JSONL file."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from encoderforge.errors import EncoderForgeError


def _cmd_run(args: argparse.Namespace) -> int:
    """Serve one request (--text, --prompt/--choice, --question/--context) or a JSONL file of them."""
    import inspect
    from typing import Any, cast

    import numpy as np

    from encoderforge.errors import InputError
    from encoderforge.runtime import load

    def jsonable(value: object) -> object:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    pipe = load(args.artifact, device=args.device, verify=not args.no_verify)
    embed = pipe.task == "feature-extraction" and not args.per_token
    call = cast(Callable[..., Any], pipe.encode if embed else pipe)
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
    params = inspect.signature(call).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {name for name, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    unknown = sorted(set(options) - accepted) if not takes_any else []
    if unknown:
        raise InputError(f"option(s) {', '.join(unknown)} do not apply to a {pipe.task} artifact; "
                         f"it takes: {', '.join(sorted(accepted - {'inputs', 'text', 'sentences'}))}")

    def answer(request: object) -> object:
        if not isinstance(request, dict) or not request:
            raise InputError(f"a request is a JSON object of the pipeline's arguments, e.g. {{\"text\": ...}}; "
                             f"got {request!r:.60}")
        bad = sorted(set(request) - accepted) if not takes_any else []
        if bad:
            raise InputError(f"unknown key(s) {', '.join(bad)} for a {pipe.task} artifact")
        result = call(**{**options, **request})
        return {"embedding": result} if embed else result

    fields = {"text": args.text, "text_pair": args.text_pair, "prompt": args.prompt, "choices": args.choice,
              "question": args.question, "context": args.context}
    single = {k: v for k, v in fields.items() if v is not None}
    if args.input is None:
        if not single:
            raise InputError("nothing to run: pass --text (or --prompt/--choice, --question/--context) "
                             "or --input FILE.jsonl")
        text = json.dumps(answer(single), ensure_ascii=False, default=jsonable)
        if args.output:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        else:
            print(text)
        return 0
    if single:
        raise InputError("pass either --input FILE.jsonl or a single request (--text ...), not both")
    try:
        lines = [line for line in Path(args.input).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read --input {args.input!r}: {exc}") from exc
    batchable = pipe.task in ("text-classification", "token-classification", "fill-mask", "feature-extraction")
    results: list[object] = [None] * len(lines)
    errors = 0
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(lines), unit="line", file=sys.stderr, disable=args.no_progress)
        step, close = bar.update, bar.close
    except ImportError:
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            if not args.no_progress and (done[0] == len(lines) or done[0] % max(1, len(lines) // 20) < n):
                print(f"{done[0]}/{len(lines)} lines", file=sys.stderr)

        def close() -> None:
            return None

    requests: list[object] = []
    for number, line in enumerate(lines, 1):
        try:
            requests.append(json.loads(line))
        except json.JSONDecodeError as exc:
            requests.append(InputError(f"line {number} is not JSON: {exc}"))
    size = max(1, args.batch_size)
    for start in range(0, len(requests), size):
        chunk = list(range(start, min(start + size, len(requests))))
        texts = [requests[i] for i in chunk]
        if (batchable and len(chunk) > 1 and all(isinstance(r, dict) and set(r) == {"text"} for r in texts)):
            try:
                batch = call(**options, text=[cast(dict[str, Any], r)["text"] for r in texts])
                for i, value in zip(chunk, batch):
                    results[i] = {"embedding": value} if embed else value
                step(len(chunk))
                continue
            except EncoderForgeError:
                pass  # one bad line: answer them one by one so only it fails
        for i in chunk:
            try:
                if isinstance(requests[i], Exception):
                    raise requests[i]  # type: ignore[misc]
                results[i] = answer(requests[i])
            except EncoderForgeError as exc:
                results[i] = {"error": str(exc), "line": i + 1}
                errors += 1
            step(1)
    close()
    text = "".join(json.dumps(r, ensure_ascii=False, default=jsonable) + "\n" for r in results)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(results)} results to {args.output}" + (f" ({errors} failed)" if errors else ""),
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if errors else 0


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

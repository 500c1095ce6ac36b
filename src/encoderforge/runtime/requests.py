"""Answer requests with an artifact's pipeline: one request, or a JSONL file of them (`encoderforge run`).

Options are checked against the pipeline's signature before any work; in a file, each bad line gets its own
`{"error", "line"}` result while the others are answered, and lines are batched where the task allows.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from encoderforge.errors import EncoderForgeError, InputError
from encoderforge.runtime import load


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    artifact: str
    device: Any = "auto"
    verify: bool = True
    per_token: bool = False  # feature-extraction: hidden states instead of encode()
    options: Mapping[str, Any] = field(default_factory=dict)  # pipeline keyword options
    single: Mapping[str, Any] = field(default_factory=dict)  # one request's arguments (text, question, ...)
    input: str | None = None  # JSONL file of requests
    output: str | None = None  # where to write; None: stdout
    batch_size: int = 32
    progress: bool = True


def json_default(value: object) -> object:
    """`json.dumps(default=...)` for pipeline results: numpy arrays and scalars become lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _same_file(first: str, second: str) -> bool:
    a, b = Path(first).expanduser(), Path(second).expanduser()
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _write_output(output: str, text: str) -> None:
    try:
        Path(output).expanduser().write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write --output {output!r}: {exc.strerror or exc}; choose a file in an existing "
                         "directory you can write to") from exc


def run_requests(config: RunConfig) -> int:
    """Answer one request or a JSONL file; return the exit status (1 when a line failed)."""
    options = dict(config.options)
    single = dict(config.single)
    if isinstance(config.batch_size, bool) or not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise InputError(f"--batch-size must be a positive int, got {config.batch_size!r}")
    if config.input is not None and config.output is not None and _same_file(config.input, config.output):
        raise InputError(f"--output {config.output!r} is the --input file; write the results to another file "
                         "(the input would be overwritten)")
    pipe = load(config.artifact, device=config.device, verify=config.verify)
    contract = pipe.contract
    embed = contract.result == "embedding" and not config.per_token
    call = cast(Callable[..., Any], pipe.encode if embed else pipe)
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

    if config.input is None:
        if not single:
            raise InputError("nothing to run: pass --text (or --prompt/--choice, --question/--context) "
                             "or --input FILE.jsonl")
        text = json.dumps(answer(single), ensure_ascii=False, default=json_default)
        if config.output:
            _write_output(config.output, text + "\n")
        else:
            print(text)
        return 0
    if single:
        raise InputError("pass either --input FILE.jsonl or a single request (--text ...), not both")
    try:
        lines = [line for line in Path(config.input).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read --input {config.input!r}: {exc}") from exc
    fields = set(contract.request_fields)
    batchable = contract.rows_batch
    results: list[object] = [None] * len(lines)
    errors = 0
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(lines), unit="line", file=sys.stderr, disable=not config.progress)
        step, close = bar.update, bar.close
    except ImportError:
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            if config.progress and (done[0] == len(lines) or done[0] % max(1, len(lines) // 20) < n):
                print(f"{done[0]}/{len(lines)} lines", file=sys.stderr)

        def close() -> None:
            return None

    requests: list[object] = []
    for number, line in enumerate(lines, 1):
        try:
            requests.append(json.loads(line))
        except json.JSONDecodeError as exc:
            requests.append(InputError(f"line {number} is not JSON: {exc}"))
    size = config.batch_size
    for start in range(0, len(requests), size):
        chunk = list(range(start, min(start + size, len(requests))))
        texts = [requests[i] for i in chunk]
        if (batchable and len(chunk) > 1 and all(isinstance(r, dict) and set(r) == fields for r in texts)):
            try:
                rows = [cast(dict[str, Any], r) for r in texts]
                batch = call(**options, **{name: [r[name] for r in rows] for name in contract.request_fields})
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
    text = "".join(json.dumps(r, ensure_ascii=False, default=json_default) + "\n" for r in results)
    if config.output:
        _write_output(config.output, text)
        print(f"wrote {len(results)} results to {config.output}" + (f" ({errors} failed)" if errors else ""),
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if errors else 0



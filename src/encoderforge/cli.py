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
        with_past=args.with_past,
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
    key = result.entry["key"]
    state = "up to date" if result.cached else f"built in {result.entry['build_seconds']} s"
    print(f"{result.path}: {state} ({key['gpu']}, compute {key['compute_capability']}, TensorRT {key['tensorrt']}, "
          f"profiles {key['profiles']})")
    report = result.entry.get("validation")
    if report:
        print(f"validation vs the ONNX graph: {'PASSED' if report['passed'] else 'FAILED'}, min cosine "
              f"{report['min_cosine']:.6f} (required {report['min_cosine_required']}), "
              f"max abs diff {report['max_abs_diff']:.2e}, {len(report['cases'])} cases")
    return 0


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


def _cmd_serve(args: argparse.Namespace) -> int:
    from encoderforge.serving.triton import ServeConfig, serve

    serve(ServeConfig(
        artifacts=tuple(args.artifacts), host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, max_batch=args.max_batch, max_queue_delay_ms=args.max_queue_delay_ms,
        request_timeout_ms=args.request_timeout_ms, max_queue_size=args.max_queue_size,
        max_text_bytes=args.max_text_bytes, instances=args.instances, device=args.device, threads=args.threads,
        shutdown_timeout_s=args.shutdown_timeout_s, log_verbose=1 if args.verbose else 0,
    ))
    return 0


def _cmd_triton_repo(args: argparse.Namespace) -> int:
    from encoderforge.serving.repo import RepoConfig, write_repository

    written = write_repository(RepoConfig(
        artifact=args.artifact, output=Path(args.output), name=args.name, variant=args.variant,
        max_batch=args.max_batch, max_queue_delay_ms=args.max_queue_delay_ms, instances=args.instances,
        kind=args.kind, force=args.force,
    ))
    for model in written:
        print(f"wrote {model}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from encoderforge.serving.batch import BatchConfig, run_batch

    report = run_batch(BatchConfig(
        artifact=args.artifact, input=args.input, output=args.output, text_column=args.text_column,
        context_column=args.context_column, keep=tuple(args.keep), engine=args.engine, workers=args.workers,
        shard_rows=args.shard_rows, batch_size=args.batch_size, threads=args.threads, output_format=args.format,
        ray_address=args.ray_address, progress=not args.quiet,
    ))
    print(f"{report.rows:,} rows in {report.shards} shard(s) ({report.skipped} already done) -> {report.output} "
          f"in {report.seconds:.1f} s")
    return 0


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
    print(f"wrote {artifact.path} ({artifact.family}, {artifact.task}, {manifest['precision']} for {manifest['target']})")
    for result in manifest["passes"]:
        counts = ", ".join(f"{op} {n}" + (f"/{result['expected'][op]}" if op in result["expected"] else "")
                           for op, n in result["counts"].items())
        short = "" if not result["shortfalls"] else f"  SHORTFALL: {', '.join(result['shortfalls'])}"
        print(f"  pass {result['name']}: {counts or 'no counts'}{short}")
    fid = manifest["fidelity"]
    agreement = "n/a" if fid["argmax_agreement"] is None else f"{fid['argmax_agreement']:.3f}"
    sqnr = "inf" if fid["median_sqnr_db"] is None else f"{fid['median_sqnr_db']:.1f} dB"
    print(f"  fidelity vs fp32 on {fid['samples']} held-out inputs: min cosine {fid['min_cosine']:.6f}, "
          f"median SQNR {sqnr}, max abs diff {fid['max_abs_diff']:.3g}, argmax agreement {agreement} "
          f"(bound: accuracy drop <= {fid['bound']['max_accuracy_drop']:g})")
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
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17 TorchScript, 18 dynamo)")
    p.add_argument("--tolerance", type=float, default=None, help="max abs diff vs PyTorch (default: family's, 1e-4)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom modeling code (off by default)")
    p.add_argument("--with-past", action="store_true",
                   help="text-generation: also write model_with_past.onnx (past key/values in and out) for fast decoding")
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

    p = sub.add_parser("serve", help="serve artifacts over HTTP/gRPC with Triton Inference Server (PyTriton)")
    p.add_argument("artifacts", nargs="+", metavar="[NAME=]ARTIFACT", help="artifact directories; model name = dir name")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics at /metrics")
    p.add_argument("--max-batch", type=int, default=32, help="dynamic batching: most rows per batch")
    p.add_argument("--max-queue-delay-ms", type=float, default=2.0, help="dynamic batching: longest wait to fill a batch")
    p.add_argument("--request-timeout-ms", type=int, default=30_000,
                   help="queue deadline; a request's own `timeout` parameter (microseconds) overrides it; 0: none")
    p.add_argument("--max-queue-size", type=int, default=0, help="reject requests beyond this queue length (0: no limit)")
    p.add_argument("--max-text-bytes", type=int, default=200_000, help="longer texts are rejected with 400")
    p.add_argument("--instances", type=int, default=1, help="model instances (sessions) per artifact")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads per instance")
    p.add_argument("--shutdown-timeout-s", type=int, default=30, help="grace period for in-flight requests on SIGTERM")
    p.set_defaults(handler=_cmd_serve)

    p = sub.add_parser("triton-repo", help="write a Triton model repository (ensemble: tokenize, model, postprocess)")
    p.add_argument("artifact")
    p.add_argument("--output", required=True, help="model repository directory (created or added to)")
    p.add_argument("--name", default=None, help="ensemble name (default: the artifact directory's name)")
    p.add_argument("--variant", choices=["onnxruntime", "python"], default="onnxruntime",
                   help="run the graph with Triton's onnxruntime backend, or in a Python-backend model")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-queue-delay-ms", type=float, default=2.0)
    p.add_argument("--instances", type=int, default=1, help="instances of the graph model")
    p.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="instance group kind of the graph model")
    p.add_argument("--force", action="store_true", help="replace models of the same name")
    p.set_defaults(handler=_cmd_triton_repo)

    p = sub.add_parser("batch", help="run an artifact over a Parquet/JSONL corpus (Ray Data or local processes)")
    p.add_argument("artifact")
    p.add_argument("--input", required=True, help=".parquet (file or directory) or .jsonl corpus")
    p.add_argument("--output", required=True, help="directory of shards part-NNNNN.parquet (resumable)")
    p.add_argument("--text-column", default="text", help="column with the texts (questions for QA)")
    p.add_argument("--context-column", default="context", help="question-answering: column with the contexts")
    p.add_argument("--keep", nargs="*", default=[], help="input columns copied to the output (e.g. an id)")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=int, default=1, help="processes (local) or actors (ray), one session each")
    p.add_argument("--shard-rows", type=int, default=10_000, help="rows per output shard (unit of resume)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads per worker")
    p.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_cmd_batch)
    p = sub.add_parser("optimize", help="fuse / quantize an artifact for a target; writes a new artifact with a fidelity report")
    p.add_argument("artifact", help="source artifact directory (fp32, from `encoderforge export`)")
    p.add_argument("--output", required=True, help="new artifact directory")
    p.add_argument("--target", default="cpu", help="cpu | cuda | tensorrt (default cpu)")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8-dynamic | int8-static (default fp32)")
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

"""Serving (Ray Serve), Triton model repositories and corpus batch jobs."""

from __future__ import annotations

import argparse
from pathlib import Path


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; pick one in 1-65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port; pick one in 1-65535")
    return port


def _cmd_serve(args: argparse.Namespace) -> int:
    from encoderforge.serving.ray_serve import ServeConfig, serve

    serve(ServeConfig(
        artifacts=tuple(args.artifacts), host=args.host, http_port=args.http_port, replicas=args.replicas,
        max_batch=args.max_batch, max_queue_delay_ms=args.max_queue_delay_ms, max_text_bytes=args.max_text_bytes,
        device=args.device, threads=args.threads, workers=args.workers, request_timeout_s=args.request_timeout_s,
        shutdown_timeout_s=args.shutdown_timeout_s, ray_address=args.ray_address,
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve artifacts over HTTP (KServe v2, OpenAI / TEI embeddings) on Ray Serve")
    p.add_argument("artifacts", nargs="+", metavar="[NAME=]ARTIFACT", help="artifact directories; model name = dir name")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--http-port", type=_port, default=8000)
    p.add_argument("--replicas", type=int, default=1, help="replicas, each holding every model (Ray Serve)")
    p.add_argument("--max-batch", type=int, default=32, help="most rows a model runs at once")
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0, help="longest wait to fill a batch")
    p.add_argument("--max-text-bytes", type=int, default=200_000, help="longer texts are rejected with 400")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of each session call "
                   "(default: cores / (replicas x workers), at least 1)")
    p.add_argument("--workers", type=int, default=2, help="batches per model and replica in flight at once "
                   "(onnxruntime CPU runs them concurrently)")
    p.add_argument("--request-timeout-s", type=float, default=60.0, help="end-to-end limit of one request")
    p.add_argument("--shutdown-timeout-s", type=float, default=30.0, help="grace for in-flight requests on SIGTERM")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
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

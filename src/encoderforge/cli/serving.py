"""Triton serving and corpus batch jobs."""

from __future__ import annotations

import argparse
from pathlib import Path


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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

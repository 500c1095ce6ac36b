"""Served vs in-process throughput of `encoderforge serve`, and its reliability, on loopback (every loop bounded).

    python benchmarks/serving_load.py --model minilm=out/minilm --model cls=out/rb-cls@300 [--requests 1000]
        [--clients 64] [--burst 1000] [--soak-seconds 300] [--output benchmarks/results/serving_load.json]

Per model, in one run on the same sentences (one sentence per request, lengths mixed):
(1 and 2 alternate for --rounds rounds; the ratio is total in-process time / total served time)
1. in process: the runtime on all sentences at once (`encode(texts, batch_size=32)` for embeddings, the pipeline
   call otherwise), with --threads intra-op threads (default: the cores);
2. served: `encoderforge serve` in a subprocess (its own thread defaults unless --server-threads), --clients
   concurrent HTTP clients (KServe v2 JSON) sending --requests requests; throughput, p50 / p99 latency, errors;
   served / in-process ratio; the CPU each process spent per request (client, HAProxy, replica, the rest of
   Ray, other processes of the machine). The clients are raw asyncio HTTP/1.1 on keep-alive connections with
   requests prepared before timing, so that the load generator takes as little of the shared cores as it can;
3. the first model only: a burst of --burst requests in flight at once; every bad request (malformed JSON, no
   `inputs`, wrong datatype / shape / name, empty, oversize, unknown model, not UTF-8 JSON) answered while good
   requests keep flowing; a soak of --soak-seconds with the server's resident memory sampled; SIGTERM with
   requests in flight (all must be answered).
Results go to --output as JSON with the machine fingerprint, paths made portable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.bench.fingerprint import fingerprint
from encoderforge.bench.portable import portable

HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")


class Connection:
    """One HTTP/1.1 keep-alive connection on raw asyncio streams: the load generator shares the cores with the
    server, so it costs as little CPU per request as it can (prepared request bytes, no client library)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(HOST, self.port, limit=1 << 20)
        reader, writer = self.streams
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            headers = head.lower()
            at = headers.find(b"\r\ncontent-length:")
            if at >= 0:
                body = await reader.readexactly(int(headers[at + 17:headers.index(b"\r\n", at + 2)]))
            elif b"\r\ntransfer-encoding: chunked" in headers:
                body = await _chunked(reader)
            else:
                body = await reader.read()
            if b"\r\nconnection: close" in headers or at < 0 and b"chunked" not in headers:
                self.close()
            return status, body
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return b"".join(p[:-2] for p in parts)


def http_request(path: str, port: int, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def sentences(count: int) -> list[str]:
    from encoderforge.corpus import corpus_lines

    lines = corpus_lines()
    return [" ".join(lines[(i * 7 + k) % len(lines)] for k in range(1 + i % 3)) if i % 5 == 0 else lines[i % len(lines)]
            for i in range(count)]


def tree_pids(root: int) -> list[int]:
    """A process and all its descendants (from /proc)."""
    pids, stack = [], [root]
    while stack:
        current = stack.pop()
        if current in pids:
            continue
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total = 0
    for current in tree_pids(pid):
        try:
            total += sum(int(line.split()[1]) for line in Path(f"/proc/{current}/status").read_text().splitlines()
                         if line.startswith("VmRSS:"))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


ROLES = (("haproxy", "haproxy"), ("ServeReplica", "replica"), ("ServeController", "controller"),
         ("raylet", "raylet"), ("gcs_server", "gcs"))


def cpu_snapshot(server: int) -> dict[str, float]:
    """CPU seconds so far: the client (this process), each role of the server tree, and the whole machine."""
    out = {"client": sum(os.times()[:2]), "machine": 0.0}
    for pid in tree_pids(server):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        role = "serve CLI" if pid == server else next((r for key, r in ROLES if key in argv), "ray other")
        fields = stat[stat.rindex(")") + 2:].split()
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    out["machine"] = (sum(ticks) - ticks[3] - ticks[4]) / TICK  # all but idle and iowait
    return out


def cpu_use(before: dict[str, float], after: dict[str, float], requests: int, wall: float) -> dict[str, Any]:
    """CPU ms per request of each role, the rest of the machine (other jobs) included, and the machine's use."""
    spent = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    machine = spent.pop("machine")
    spent["other processes"] = max(0.0, machine - sum(spent.values()))
    cores = os.cpu_count() or 1
    return {"ms_per_request": {k: round(1000 * v / max(requests, 1), 2) for k, v in sorted(spent.items())},
            "client_share_of_busy_cpu": round(spent["client"] / max(machine, 1e-9), 3),
            "machine_busy": round(machine / (cores * wall), 3)}


def v2_body(text: str, name: str = "text") -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}).encode()


def in_process(pipeline: Any, texts: list[str]) -> dict[str, Any]:
    """The runtime on all the sentences at once, as a user would call it (it sorts them into length batches)."""
    start = time.perf_counter()
    if pipeline.task == "feature-extraction":
        pipeline.encode(texts, batch_size=32)
    else:
        pipeline(texts, batch_size=32)
    wall = time.perf_counter() - start
    return {"sentences": len(texts), "wall_s": round(wall, 2), "sentences_per_s": round(len(texts) / wall, 1)}


ERRORS: list[str] = []  # the first few client-side failures, for the record


class Target:
    """One model's infer route on the server, with every sentence's request prepared once (not per request)."""

    def __init__(self, port: int, model: str, texts: list[str]) -> None:
        self.port = port
        self.path = f"/v2/models/{model}/infer"
        self.requests = [http_request(self.path, port, v2_body(t)) for t in texts]

    def raw(self, index: int) -> bytes:
        return self.requests[index % len(self.requests)]


async def _one(connection: Connection, raw: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        status, body = await connection.request(raw)
        if status != 200 and len(ERRORS) < 5:
            ERRORS.append(f"{status}: {body[:160]!r}")
        return status, time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - counted as an error, never raised
        if len(ERRORS) < 5:
            ERRORS.append(f"{type(exc).__name__}: {str(exc)[:160]}")
        return -1, time.perf_counter() - start


async def closed_loop(target: Target, requests: int, clients: int, timeout_s: float,
                      server: int | None = None) -> dict[str, Any]:
    """`clients` workers on a keep-alive connection each, each sending its next request when the last one is
    answered, `requests` in all; with `server`, the CPU each process spent meanwhile."""
    results: list[tuple[int, float]] = []
    counter = iter(range(requests))
    deadline = time.monotonic() + timeout_s

    async def worker() -> None:
        connection = Connection(target.port)
        try:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                results.append(await asyncio.wait_for(_one(connection, target.raw(i)), 120))
        finally:
            connection.close()

    before = cpu_snapshot(server) if server else {}
    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    wall = time.perf_counter() - start
    summary = summarize(results, wall, clients=clients)
    if server:
        summary["cpu"] = cpu_use(before, cpu_snapshot(server), len(results), wall)
    return summary


def summarize(results: list[tuple[int, float]], wall: float, **extra: Any) -> dict[str, Any]:
    latencies = np.array([r[1] for r in results]) * 1000
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {**extra, "error_samples": list(ERRORS), "requests": len(results), "errors": sum(1 for r in results if r[0] != 200),
            "statuses": statuses, "wall_s": round(wall, 2), "requests_per_s": round(len(results) / wall, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1), "max_ms": round(float(latencies.max()), 1)}


async def burst(target: Target, count: int) -> dict[str, Any]:
    """`count` requests in flight at once, each on its own connection."""
    connections = [Connection(target.port) for _ in range(count)]
    start = time.perf_counter()
    results = await asyncio.gather(*[asyncio.wait_for(_one(c, target.raw(i)), 300)
                                     for i, c in enumerate(connections)])
    wall = time.perf_counter() - start
    for connection in connections:
        connection.close()
    return summarize(list(results), wall, in_flight=count)


def post(url: str, payload: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=payload, method="POST",
                                     headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()[:160]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()[:200]


def bad_requests(base: str, model: str) -> dict[str, Any]:
    url = f"{base}/v2/models/{model}/infer"
    tensor = {"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["hello"]}
    cases = {
        "malformed JSON": b"{not json",
        "not UTF-8": b"\xff\xfe{}",
        "no inputs": json.dumps({"input": []}).encode(),
        "wrong input name": v2_body("hello", name="txt"),
        "wrong datatype": json.dumps({"inputs": [{**tensor, "datatype": "FP32", "data": [1.0]}]}).encode(),
        "wrong shape": json.dumps({"inputs": [{**tensor, "shape": [2, 1]}]}).encode(),
        "empty text": v2_body(""),
        "10 MB text": v2_body("a" * 10_000_000),
    }
    out = {name: dict(zip(("status", "message"), post(url, payload))) for name, payload in cases.items()}
    out["unknown model"] = dict(zip(("status", "message"), post(f"{base}/v2/models/no-such/infer", v2_body("x"))))
    out["good request afterwards"] = {"status": post(url, v2_body("still alive?"))[0]}
    return out


async def bad_while_good(target: Target, base: str, model: str) -> dict[str, Any]:
    """Good traffic from 16 clients while every bad request is sent 5 times: good ones must all succeed."""
    loop = asyncio.get_running_loop()
    good = asyncio.ensure_future(closed_loop(target, 400, 16, 120))
    bad = []
    for _ in range(5):
        bad.append(await loop.run_in_executor(None, bad_requests, base, model))
    statuses = sorted({case["status"] for round_ in bad for name, case in round_.items()
                       if name != "good request afterwards"})
    return {"good": await good, "bad_statuses": statuses}


async def soak(target: Target, seconds: float, clients: int, pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    samples: list[tuple[float, float]] = []
    task = asyncio.ensure_future(closed_loop(target, 10**9, clients, seconds, server=pid))
    start = time.monotonic()
    while time.monotonic() < deadline:
        samples.append((round(time.monotonic() - start, 1), round(tree_rss_mb(pid), 1)))
        await asyncio.sleep(min(5.0, max(seconds / 30, 0.5)))
    load = await task
    tail = samples[len(samples) // 3:]
    slope = float(np.polyfit([s[0] for s in tail], [s[1] for s in tail], 1)[0]) * 60 if len(tail) > 2 else 0.0
    return {"seconds": seconds, "load": load, "rss_mb_first": samples[0][1], "rss_mb_last": samples[-1][1],
            "rss_mb_after_warmup": [min(s[1] for s in tail), max(s[1] for s in tail)],
            "rss_slope_mb_per_min_after_warmup": round(slope, 2), "samples": samples}


async def drain(target: Target, server: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGTERM while 64 requests are in flight: every one must still be answered."""
    connections = [Connection(target.port) for _ in range(64)]
    pending = [asyncio.ensure_future(asyncio.wait_for(_one(c, target.raw(i)), 120))
               for i, c in enumerate(connections)]
    await asyncio.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*pending)
    for connection in connections:
        connection.close()
    return {"in_flight": 64, "answered_200": sum(1 for r in results if r[0] == 200)}


def start_server(specs: list[str], port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    threads = ["--threads", str(args.server_threads)] if args.server_threads else []
    command = [sys.executable, "-m", "encoderforge.cli", "serve", *specs, "--host", HOST, "--http-port", str(port),
               *threads, "--workers", str(args.workers), "--max-batch", str(args.max_batch),
               "--max-queue-delay-ms", str(args.max_queue_delay_ms), "--replicas", str(args.replicas),
               "--request-timeout-s", "600"]  # the burst queues all its requests at once
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout_s: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return round(time.monotonic() - start, 1)
        except OSError:
            time.sleep(0.5)
    raise SystemExit("server not ready in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="NAME=ARTIFACT[@REQUESTS] (repeatable; REQUESTS defaults to --requests)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--burst", type=int, default=1000, help="requests in flight at once (first model)")
    parser.add_argument("--soak-seconds", type=float, default=0, help="0: no soak")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="in-process intra-op threads")
    parser.add_argument("--server-threads", type=int, default=0, help="serve --threads (0: its default)")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="in-process / served rounds per model, alternating")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-queue-delay-ms", type=float, default=5)
    parser.add_argument("--output", default="benchmarks/results/serving_load.json")
    args = parser.parse_args()

    texts = sentences(args.requests)
    models, counts = [], {}
    for spec in args.model:
        name, _, rest = spec.partition("=")
        path, _, count = rest.partition("@")
        models.append((name, path))
        counts[name] = int(count) if count else args.requests
    port = free_port()
    base = f"http://{HOST}:{port}"
    results: dict[str, Any] = {
        "note": "loopback; client and server share the machine's cores with each other (and, where this ran, "
                "with other jobs): compare served with in-process of the same run, not across machines",
        "fingerprint": fingerprint({name: {"path": path} for name, path in models}, threads=args.threads),
        "settings": {k: getattr(args, k) for k in ("requests", "rounds", "clients", "burst", "soak_seconds", "threads",
                                                   "server_threads", "workers", "replicas", "max_batch",
                                                   "max_queue_delay_ms")},
        "models": {},
    }
    import encoderforge

    server = start_server([f"{n}={p}" for n, p in models], port, args)
    try:
        results["startup_s"] = wait_ready(base, server)
        for name, path in models:
            # Rounds alternate in-process and served runs, so that load from other jobs hits both alike.
            pipeline = encoderforge.load(path, device="cpu", intra_op_threads=args.threads)
            in_process(pipeline, texts[:64])  # warm-up
            target = Target(port, name, texts[:counts[name]])
            asyncio.run(closed_loop(target, 2 * args.clients, args.clients, 120))  # warm-up
            rounds = []
            for _ in range(args.rounds):
                local = in_process(pipeline, texts[:counts[name]])
                served = asyncio.run(closed_loop(target, counts[name], args.clients, 600, server=server.pid))
                rounds.append({"in_process": local, "served": served,
                               "ratio": round(served["requests_per_s"] / local["sentences_per_s"], 3)})
                print(name, json.dumps(rounds[-1]), flush=True)
            pipeline.close()
            total_local = sum(r["in_process"]["wall_s"] for r in rounds)
            total_served = sum(r["served"]["wall_s"] for r in rounds)
            results["models"][name] = {
                "rounds": rounds, "served_over_in_process": round(total_local / total_served, 3),
                "served_p50_ms": max(r["served"]["p50_ms"] for r in rounds),
                "served_p99_ms": max(r["served"]["p99_ms"] for r in rounds),
                "errors": sum(r["served"]["errors"] for r in rounds)}
            print(name, "served / in process", results["models"][name]["served_over_in_process"], flush=True)
        first = models[0][0]
        target = Target(port, first, texts)
        if args.burst:
            results["burst"] = asyncio.run(burst(target, args.burst))
            print("burst", json.dumps(results["burst"]), flush=True)
        results["bad_requests"] = bad_requests(base, first)
        results["bad_while_good"] = asyncio.run(bad_while_good(target, base, first))
        print("bad", json.dumps(results["bad_requests"], indent=1), json.dumps(results["bad_while_good"]), flush=True)
        if args.soak_seconds:
            results["soak"] = asyncio.run(soak(target, args.soak_seconds, 16, server.pid))
            print("soak", json.dumps({k: v for k, v in results["soak"].items() if k != "samples"}), flush=True)
        stop = time.perf_counter()
        results["drain"] = asyncio.run(drain(target, server))
        server.wait(timeout=120)
        results["drain"].update(returncode=server.returncode, seconds=round(time.perf_counter() - stop, 1))
        print("drain", json.dumps(results["drain"]), flush=True)
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(portable(results), indent=2) + "\n")
        print("->", args.output, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

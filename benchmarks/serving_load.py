"""Reliability of `encoderforge serve`, measured on loopback (127.0.0.1 only; every loop is bounded).

    python benchmarks/serving_load.py --artifact out/minilm [--requests 1000] [--soak-seconds 300]

1. load: N requests in flight at once (KServe v2 JSON over HTTP), errors counted, latency p50 / p99;
2. soak: C clients in a loop for --soak-seconds, resident memory of the server's process tree sampled;
3. bad requests: malformed JSON, wrong field, empty text, 10 MB text, unknown model -> status + message;
4. deadline: a request whose `timeout` parameter expires in the queue -> status + message.

The server runs as a subprocess (`python -m encoderforge.cli serve ...`); results go to --output as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.bench.portable import portable

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind((HOST, 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (from /proc), in MiB."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


def body(text: str, name: str = "text", **extra: Any) -> bytes:
    tensor = {"name": name, "shape": [1, 1], "datatype": "BYTES", "data": [text]}
    return json.dumps({"inputs": [tensor], **extra}).encode()


async def _one(session: Any, url: str, payload: bytes) -> tuple[int, float, str]:
    start = time.perf_counter()
    try:
        async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as response:
            text = await response.text()
            return response.status, time.perf_counter() - start, text[:200]
    except Exception as exc:  # noqa: BLE001 - counted as an error, never raised
        return -1, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:200]


async def load_phase(url: str, texts: list[str], count: int, timeout_s: float) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        start = time.perf_counter()
        results = await asyncio.gather(*[_one(session, url, body(texts[i % len(texts)])) for i in range(count)])
        wall = time.perf_counter() - start
    latencies = np.array([r[1] for r in results]) * 1000
    errors = [r for r in results if r[0] != 200]
    return {"requests": count, "concurrency": count, "errors": len(errors), "error_samples": errors[:3],
            "wall_s": round(wall, 2), "throughput_rps": round(count / wall, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1), "max_ms": round(float(latencies.max()), 1)}


async def soak_phase(url: str, texts: list[str], seconds: float, clients: int, pid: int) -> dict[str, Any]:
    import aiohttp

    deadline = time.monotonic() + seconds
    samples: list[tuple[float, float]] = []
    counts = {"ok": 0, "errors": 0}
    latencies: list[float] = []

    async def client(index: int, session: Any) -> None:
        i = index
        while time.monotonic() < deadline:
            status, latency, _ = await _one(session, url, body(texts[i % len(texts)]))
            counts["ok" if status == 200 else "errors"] += 1
            latencies.append(latency)
            i += clients

    async def sampler() -> None:
        start = time.monotonic()
        while time.monotonic() < deadline:
            samples.append((round(time.monotonic() - start, 1), round(tree_rss_mb(pid), 1)))
            await asyncio.sleep(min(5.0, max(seconds / 30, 0.5)))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(sampler(), *[client(i, session) for i in range(clients)])
    rss = [s[1] for s in samples]
    tail = rss[len(rss) // 3:]  # after warm-up
    slope = float(np.polyfit([s[0] for s in samples[len(rss) // 3:]], tail, 1)[0]) * 60 if len(tail) > 2 else 0.0
    lat = np.array(latencies) * 1000
    return {"seconds": seconds, "clients": clients, "requests": counts["ok"] + counts["errors"],
            "errors": counts["errors"], "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "rss_mb_first": rss[0], "rss_mb_last": rss[-1],
            "rss_mb_max": max(rss), "rss_mb_after_warmup_min": min(tail), "rss_mb_after_warmup_max": max(tail),
            "rss_slope_mb_per_min_after_warmup": round(slope, 2), "samples": samples}


def post(url: str, payload: bytes) -> tuple[int, str, float]:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()[:160], time.perf_counter() - start
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()[:160], time.perf_counter() - start


def bad_requests(base: str, model: str) -> dict[str, Any]:
    cases = {
        "malformed JSON": (f"{base}/v2/models/{model}/infer", b"{not json"),
        "wrong field": (f"{base}/v2/models/{model}/infer", body("hello", name="txt")),
        "no inputs": (f"{base}/v2/models/{model}/infer", json.dumps({"input": []}).encode()),
        "empty text": (f"{base}/v2/models/{model}/infer", body("")),
        "10 MB text": (f"{base}/v2/models/{model}/infer", body("a" * 10_000_000)),
        "unknown model": (f"{base}/v2/models/no-such-model/infer", body("hello")),
        "deadline (timeout=1 us)": (f"{base}/v2/models/{model}/infer", body("hello", parameters={"timeout": 1})),
    }
    out = {}
    for name, (url, payload) in cases.items():
        status, message, seconds = post(url, payload)
        out[name] = {"status": status, "message": message, "seconds": round(seconds, 3)}
    status, _, _ = post(f"{base}/v2/models/{model}/infer", body("still alive?"))
    out["good request afterwards"] = {"status": status}
    return out


def wait_ready(base: str, model: str, process: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/v2/models/{model}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise SystemExit("server not ready in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--requests", type=int, default=1000, help="requests in flight at once in the load phase")
    parser.add_argument("--soak-seconds", type=float, default=300)
    parser.add_argument("--soak-clients", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-queue-delay-ms", type=float, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--request-timeout-ms", type=int, default=600_000,
                        help="server's queue deadline; the load phase queues all requests at once")
    parser.add_argument("--output", default="benchmarks/results/serving_load.json")
    args = parser.parse_args()

    http, grpc, metrics = free_ports(3)
    base = f"http://{HOST}:{http}"
    model = Path(args.artifact).resolve().name
    command = [sys.executable, "-m", "encoderforge.cli", "serve", args.artifact, "--host", HOST,
               "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
               "--max-batch", str(args.max_batch), "--max-queue-delay-ms", str(args.max_queue_delay_ms),
               "--request-timeout-ms", str(args.request_timeout_ms), "--shutdown-timeout-s", "10"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, Any] = {"artifact": args.artifact, "cpus": os.cpu_count(), "max_batch": args.max_batch,
                               "max_queue_delay_ms": args.max_queue_delay_ms}
    try:
        started = time.perf_counter()
        wait_ready(base, model, server)
        results["startup_s"] = round(time.perf_counter() - started, 1)
        texts = [f"request {i}: the quick brown fox jumps over the lazy dog " * (1 + i % 6) for i in range(100)]
        url = f"{base}/v2/models/{model}/infer"
        asyncio.run(load_phase(url, texts, 64, 120))  # warm-up
        results["load"] = asyncio.run(load_phase(url, texts, args.requests, 600))
        print("load", json.dumps(results["load"]), flush=True)
        results["bad_requests"] = bad_requests(base, model)
        print("bad", json.dumps(results["bad_requests"], indent=1), flush=True)
        results["soak"] = asyncio.run(soak_phase(url, texts, args.soak_seconds, args.soak_clients, server.pid))
        print("soak", json.dumps({k: v for k, v in results["soak"].items() if k != "samples"}), flush=True)
        with urllib.request.urlopen(f"{base}/v2/models/{model}/stats", timeout=10) as response:
            stats = json.loads(response.read())["model_stats"][0]
        results["triton_stats"] = {"inference_count": stats["inference_count"],
                                   "execution_count": stats["execution_count"],
                                   "batch_sizes": {b["batch_size"]: b["compute_infer"]["count"]
                                                   for b in stats["batch_stats"]}}
        print("stats", json.dumps(results["triton_stats"]), flush=True)
    finally:
        server.terminate()
        stop = time.perf_counter()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        results["shutdown"] = {"returncode": server.returncode, "seconds": round(time.perf_counter() - stop, 1)}
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(portable(results), indent=2) + "\n")
        print("shutdown", results["shutdown"], "->", args.output, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

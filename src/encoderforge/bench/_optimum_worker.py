"""Run by the optimum peer under its own interpreter (--optimum-python): optimum-onnx pins transformers < 4.58,
so it lives in a separate environment without encoderforge. Imports only the standard library, numpy, the
sibling measure.py (by path) and optimum / transformers / onnxruntime of that environment.

    python _optimum_worker.py JOB.json RESULT.json   # twice: first exports (untimed), then loads and measures
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import measure
import numpy as np

_CLASSES = {
    "feature-extraction": "ORTModelForFeatureExtraction", "fill-mask": "ORTModelForMaskedLM",
    "text-classification": "ORTModelForSequenceClassification",
    "token-classification": "ORTModelForTokenClassification",
    "question-answering": "ORTModelForQuestionAnswering", "multiple-choice": "ORTModelForMultipleChoice",
}


def _prepare(job: dict[str, Any]) -> tuple[Any, Path, str, str]:
    """Export (and quantize) with optimum, untimed, like a user does once; return what `_load` times."""
    import optimum.onnxruntime as oo

    cls = getattr(oo, _CLASSES[job["task"]])
    workdir = Path(job["workdir"])
    cls.from_pretrained(job["source"], export=True).save_pretrained(workdir / "fp32")
    if not job["int8"]:
        return cls, workdir / "fp32", "model.onnx", "ORTModel export"
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    quantizer = ORTQuantizer.from_pretrained(workdir / "fp32")
    flags = set(job.get("isa", []))
    arch = "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"
    config = getattr(AutoQuantizationConfig, arch)(is_static=False, per_channel=False)
    quantizer.quantize(save_dir=workdir / "int8", quantization_config=config)
    return cls, workdir / "int8", "model_quantized.onnx", f"ORTModel export + ORTQuantizer dynamic ({arch})"


def _load(job: dict[str, Any], cls: Any, directory: Path, file_name: str) -> tuple[Any, Any]:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = job["threads"]
    model = cls.from_pretrained(directory, file_name=file_name, session_options=options)
    return model, AutoTokenizer.from_pretrained(job["source"])


def _e2e(model: Any, tokenizer: Any, task: str, point: dict[str, Any]) -> Any:
    try:
        from optimum.pipelines import pipeline
    except ImportError:
        from transformers import pipeline
    pipe = pipeline(task, model=model, tokenizer=tokenizer)
    texts, batch = point["texts"], point["batch_size"]
    if task == "question-answering":
        q, c = [t[0] for t in texts], [t[1] for t in texts]
        return lambda: pipe(question=q, context=c, batch_size=batch)
    return lambda: pipe(texts, batch_size=batch)


def main(job_path: str, result_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    prepared = Path(job["workdir"]) / "prepared.json"
    if not prepared.is_file():  # first run: export (and quantize) only, so the measured run starts clean
        cls, directory, file_name, how = _prepare(job)
        prepared.write_text(json.dumps({"directory": str(directory), "file_name": file_name, "how": how}))
        return 0
    import optimum.onnxruntime as oo

    saved = json.loads(prepared.read_text())
    cls, directory, file_name, how = (getattr(oo, _CLASSES[job["task"]]), Path(saved["directory"]),
                                      saved["file_name"], saved["how"])
    peak = measure.PeakMemory()
    base = peak.reset()
    start = time.perf_counter()
    model, tokenizer = _load(job, cls, directory, file_name)
    result: dict[str, Any] = {"load_s": time.perf_counter() - start, "description": how, "points": [],
                              "rss_before_mb": base}
    import optimum.version

    result["versions"] = {"optimum": getattr(optimum.version, "__version__", "?")}
    for point in job["points"]:
        entry = {k: point[k] for k in ("mode", "batch_size", "seq_len")}
        try:
            if point["mode"] == "model":
                feed = dict(np.load(point["feed"]))
                call = lambda feed=feed: model(**feed)
                tokens = point["batch_size"] * point["seq_len"]
            else:
                call = _e2e(model, tokenizer, job["task"], point)
                tokens = point["e2e_tokens"]
            timing = measure.time_calls(call, warmup=job["warmup"], iters=job["iters"],
                                        batch_size=point["batch_size"], tokens=tokens,
                                        max_seconds=job["max_seconds"])
            entry["timing"] = timing.to_dict()
        except Exception as exc:  # noqa: BLE001 -- report per point; the parent prints it as a skip
            entry["skipped"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"optimum {entry['mode']} b{entry['batch_size']} s{entry['seq_len']}", file=sys.stderr, flush=True)
        result["points"].append(entry)
    result["peak_rss_mb"] = peak.peak_mb() - base
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

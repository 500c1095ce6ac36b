"""Run by the optimum peers under their own interpreter (--optimum-python, --optimum-intel-python): optimum-onnx
and optimum-intel pin transformers below what encoderforge's export extra needs, so each lives in a separate
environment without encoderforge. Imports only the standard library, numpy, the sibling measure.py (by path)
and optimum / transformers / onnxruntime or openvino (+ nncf) of that environment.

    python _optimum_worker.py JOB.json RESULT.json   # twice: first exports (untimed), then loads and measures

job["engine"]: "onnxruntime" (ORTModel, + ORTQuantizer dynamic for int8) or "openvino" (optimum-intel's
OVModel at OpenVINO's default precision, + nncf.quantize TRANSFORMER of its IR on the job's calibration feeds
for int8: what optimum-intel's full quantization runs).
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
    "feature-extraction": "ModelForFeatureExtraction", "fill-mask": "ModelForMaskedLM",
    "text-classification": "ModelForSequenceClassification", "token-classification": "ModelForTokenClassification",
    "question-answering": "ModelForQuestionAnswering", "multiple-choice": "ModelForMultipleChoice",
}


def _model_class(job: dict[str, Any]) -> Any:
    if job["engine"] == "openvino":
        import optimum.intel as package

        return getattr(package, "OV" + _CLASSES[job["task"]])
    import optimum.onnxruntime as package

    return getattr(package, "ORT" + _CLASSES[job["task"]])


def _prepare(job: dict[str, Any]) -> tuple[Path, str, str]:
    """Export (and quantize) with optimum, untimed, like a user does once; return what `_load` times."""
    if job["engine"] == "openvino":
        return _prepare_openvino(job)
    cls = _model_class(job)
    workdir = Path(job["workdir"])
    cls.from_pretrained(job["source"], export=True).save_pretrained(workdir / "fp32")
    if not job["int8"]:
        return workdir / "fp32", "model.onnx", "ORTModel export"
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    quantizer = ORTQuantizer.from_pretrained(workdir / "fp32")
    flags = set(job.get("isa", []))
    arch = "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"
    config = getattr(AutoQuantizationConfig, arch)(is_static=False, per_channel=False)
    quantizer.quantize(save_dir=workdir / "int8", quantization_config=config)
    return workdir / "int8", "model_quantized.onnx", f"ORTModel export + ORTQuantizer dynamic ({arch})"


def _prepare_openvino(job: dict[str, Any]) -> tuple[Path, str, str]:
    workdir = Path(job["workdir"])
    _model_class(job).from_pretrained(job["source"], export=True, compile=False).save_pretrained(workdir / "ov")
    if not job["int8"]:
        return workdir / "ov", "openvino_model.xml", "optimum-intel OVModel export, OpenVINO default precision"
    import shutil

    import nncf
    import openvino as ov

    feeds = [dict(np.load(path)) for path in job["calibration"]]
    model = ov.Core().read_model(workdir / "ov" / "openvino_model.xml")
    names = {port.get_any_name() for port in model.inputs}
    # Gathers stay float, as in the openvino-nncf-int8 peer: quantized, OpenVINO 2026.4 cannot compile the model
    quantized = nncf.quantize(model, nncf.Dataset([{k: v for k, v in f.items() if k in names} for f in feeds]),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds),
                              ignored_scope=nncf.IgnoredScope(types=["Gather"], validate=False))
    shutil.copytree(workdir / "ov", workdir / "ov-int8", ignore=shutil.ignore_patterns("openvino_model.*"))
    ov.save_model(quantized, workdir / "ov-int8" / "openvino_model.xml")
    return (workdir / "ov-int8", "openvino_model.xml",
            f"optimum-intel OVModel export + nncf.quantize TRANSFORMER ({len(feeds)} calibration samples)")


def _load(job: dict[str, Any], directory: Path, file_name: str) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    cls = _model_class(job)
    if job["engine"] == "openvino":
        config = {"INFERENCE_NUM_THREADS": str(job["threads"]), "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        model = cls.from_pretrained(directory, file_name=file_name, ov_config=config)
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = job["threads"]
        model = cls.from_pretrained(directory, file_name=file_name, session_options=options)
    return model, AutoTokenizer.from_pretrained(job["source"])


def _e2e(model: Any, tokenizer: Any, task: str, point: dict[str, Any], engine: str) -> Any:
    texts, batch = point["texts"], point["batch_size"]
    if task == "question-answering" and engine == "openvino":  # transformers 5 has no QA pipeline
        return lambda: _answer_by_hand(model, tokenizer, texts)
    if engine == "openvino":
        from optimum.intel.pipelines import pipeline

        pipe = pipeline(task, model=model, tokenizer=tokenizer, accelerator="openvino")
    else:
        try:
            from optimum.pipelines import pipeline
        except ImportError:
            from transformers import pipeline
        pipe = pipeline(task, model=model, tokenizer=tokenizer)
    if task == "question-answering":
        q, c = [t[0] for t in texts], [t[1] for t in texts]
        return lambda: pipe(question=q, context=c, batch_size=batch)
    return lambda: pipe(texts, batch_size=batch)


def _answer_by_hand(model: Any, tokenizer: Any, pairs: list[list[str]]) -> list[str]:
    """Extractive QA as the torch peer does it: tokenize, forward, argmax start / end, decode the span."""
    encoded = tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True, truncation="only_second",
                        return_tensors="np")
    out = model(**encoded)
    starts, ends = np.asarray(out.start_logits).argmax(-1), np.asarray(out.end_logits).argmax(-1)
    return [tokenizer.decode(ids[s: max(s, e) + 1]) for ids, s, e in zip(encoded["input_ids"], starts, ends)]


def _versions(job: dict[str, Any]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ("optimum-intel", "openvino", "nncf") if job["engine"] == "openvino" else ("optimum-onnx", "onnxruntime")
    found = {}
    for name in ("optimum", "transformers", *names):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def main(job_path: str, result_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    prepared = Path(job["workdir"]) / "prepared.json"
    if not prepared.is_file():  # first run: export (and quantize) only, so the measured run starts clean
        directory, file_name, how = _prepare(job)
        prepared.write_text(json.dumps({"directory": str(directory), "file_name": file_name, "how": how}))
        return 0
    saved = json.loads(prepared.read_text())
    directory, file_name, how = Path(saved["directory"]), saved["file_name"], saved["how"]
    peak = measure.PeakMemory()
    base = peak.reset()
    start = time.perf_counter()
    model, tokenizer = _load(job, directory, file_name)
    result: dict[str, Any] = {"load_s": time.perf_counter() - start, "description": how, "points": [],
                              "rss_before_mb": base}
    result["versions"] = _versions(job)
    for point in job["points"]:
        entry = {k: point[k] for k in ("mode", "batch_size", "seq_len")}
        try:
            if point["mode"] == "model":
                feed = dict(np.load(point["feed"]))
                call = lambda feed=feed: model(**feed)
                tokens = point["batch_size"] * point["seq_len"]
            else:
                call = _e2e(model, tokenizer, job["task"], point, job["engine"])
                tokens = point["e2e_tokens"]
            timing = measure.time_calls(call, warmup=job["warmup"], iters=job["iters"],
                                        batch_size=point["batch_size"], tokens=tokens,
                                        max_seconds=job["max_seconds"])
            entry["timing"] = timing.to_dict()
        except Exception as exc:  # noqa: BLE001 -- report per point; the parent prints it as a skip
            entry["skipped"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"optimum {entry['mode']} b{entry['batch_size']} s{entry['seq_len']}", file=sys.stderr, flush=True)
        result["points"].append(entry)
    outputs = {}  # the fidelity feeds' outputs, for the parent to check against its fp32 reference
    for index, path in enumerate(job.get("fidelity", [])):
        found = model(**dict(np.load(path)))
        for name in job["output_names"]:
            value = found[name] if name in found else getattr(found, name, None)
            if value is not None:
                outputs[f"{index}/{name}"] = np.asarray(value.detach() if hasattr(value, "detach") else value,
                                                        dtype=np.float32)
    if outputs:
        # numpy's stubs type **kwds like allow_pickle (bool)
        np.savez(Path(job["workdir"]) / "fidelity_outputs.npz", **outputs)  # type: ignore[arg-type]
    result["peak_rss_mb"] = peak.peak_mb() - base
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

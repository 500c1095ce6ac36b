"""Validation that fails the export: the ONNX graph against PyTorch on real tokenized text.

Per case and output: max abs diff (gated by the family's tolerance), argmax agreement over the last axis,
and the worst per-row cosine similarity. The whole report goes into the manifest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.errors import ValidationError
from encoderforge.exporters.samples import Case
from encoderforge.tasks import TaskHead


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Max abs diff, argmax agreement on the last axis, and min cosine of the last-axis vectors."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    if reference.shape != candidate.shape:
        raise ValidationError(f"output shape {candidate.shape} differs from PyTorch's {reference.shape}")
    diff = float(np.max(np.abs(reference - candidate))) if reference.size else 0.0
    ref_rows = reference.reshape(-1, reference.shape[-1])
    cand_rows = candidate.reshape(-1, candidate.shape[-1])
    agree = float(np.mean(ref_rows.argmax(-1) == cand_rows.argmax(-1))) if ref_rows.shape[-1] > 1 else None
    norms = np.linalg.norm(ref_rows, axis=-1) * np.linalg.norm(cand_rows, axis=-1)
    cosine = np.sum(ref_rows * cand_rows, axis=-1) / np.maximum(norms, 1e-30)
    return {"max_abs_diff": diff, "argmax_agreement": agree, "min_cosine": float(cosine.min())}


def validate(
    torch_module: Any,
    model_path: Path,
    head: TaskHead,
    input_names: tuple[str, ...],
    cases: list[Case],
    *,
    tolerance: float,
) -> dict[str, Any]:
    """Run every case through PyTorch and onnxruntime; raise ValidationError when a diff exceeds tolerance."""
    import onnxruntime as ort
    import torch

    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's InvalidGraph / Fail: the exporter wrote a graph ORT rejects
        raise ValidationError(
            f"onnxruntime rejects the exported graph: {str(exc).splitlines()[0][:300]}; "
            "try the other --exporter or a newer --opset"
        ) from exc
    started = time.perf_counter()
    report: dict[str, Any] = {"tolerance": tolerance, "backend": "onnxruntime-cpu", "cases": []}
    failures = []
    for case in cases:
        with torch.no_grad():
            expected = torch_module(*(torch.from_numpy(case.feed[name]) for name in input_names))
        actual = session.run([spec.name for spec in head.outputs], {n: case.feed[n] for n in input_names})
        outputs = {}
        for spec, ref, got in zip(head.outputs, expected, actual):
            stats = compare(ref.numpy(), got)
            outputs[spec.name] = stats
            if not stats["max_abs_diff"] <= tolerance:  # also catches NaN
                failures.append(f"{case.name}/{spec.name}: max abs diff {stats['max_abs_diff']:.3g}")
        shape = list(case.feed[input_names[0]].shape)
        report["cases"].append({"name": case.name, "input_shape": shape, "outputs": outputs})
    report["max_abs_diff"] = max(o["max_abs_diff"] for c in report["cases"] for o in c["outputs"].values())
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["passed"] = not failures
    if failures:
        raise ValidationError(
            f"ONNX graph disagrees with PyTorch beyond tolerance {tolerance:g}: {'; '.join(failures)}; "
            "try the other --exporter, or raise --tolerance if the difference is expected"
        )
    return report

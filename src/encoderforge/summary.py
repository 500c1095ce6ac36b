"""Human-readable views of an artifact's manifest (what `encoderforge inspect` prints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from encoderforge.artifact import Artifact
from encoderforge.manifest import TensorSpec


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _axes(spec: TensorSpec) -> str:
    return f"{spec.name}: {spec.dtype}[{', '.join(str(a) for a in spec.axes)}]"


def validation_lines(report: Mapping[str, Any]) -> list[str]:
    lines = [(f"validation vs PyTorch ({report['backend']}, tolerance {report['tolerance']:g}): "
              f"{'PASSED' if report['passed'] else 'FAILED'}, max abs diff {report['max_abs_diff']:.2e}")]
    for case in report["cases"]:
        shape = "x".join(str(d) for d in case["input_shape"])
        for name, stats in case["outputs"].items():
            agree = "-" if stats["argmax_agreement"] is None else f"{stats['argmax_agreement']:.3f}"
            lines.append(f"  {case['name']:<18} {shape:<10} {name:<18} max|diff| {stats['max_abs_diff']:.2e}  "
                         f"argmax {agree}  min cos {stats['min_cosine']:.6f}")
    return lines


def describe(artifact: Artifact) -> str:
    m = artifact.manifest
    lines = [
        f"artifact   {artifact.path}",
        f"model      {m.source}  (family {m.family}, task {m.task})",
        (f"graph      {m.model_file}  precision {m.precision}  exporter {m.exporter}  opset {m.opset}"
         f"{'  external data' if m.external_data else ''}"),
        f"max length {m.tokenizer.max_length} tokens",
        "inputs     " + "; ".join(_axes(s) for s in m.inputs),
        "outputs    " + "; ".join(_axes(s) for s in m.outputs),
        "feeds      " + ", ".join(f"{k} <- encoding.{v}" for k, v in m.feeds.items()),
    ]
    if m.embedding is not None:
        lines.append(f"embedding  pooling {m.embedding.pooling}, normalize {m.embedding.normalize}")
    if m.passes:
        lines.append("passes     " + ", ".join(p.name for p in m.passes))
    if m.selection is not None:  # optimize --precision auto
        sel = m.selection
        label = sel.chosen.label if sel.chosen else f"{sel.backend} {sel.precision}"
        lines.append(f"runs on    {label} (auto, measured on {sel.cpu_model}, "
                     f"{sel.cpu_kind}; {len(sel.candidates)} candidates in the manifest's selection)")
    if m.with_past is not None:  # text-generation KV-cache graph (export --with-past)
        wp = m.with_past
        lines.append(f"with past  {wp.model_file}  {wp.num_layers} layers x {wp.num_heads} heads x "
                     f"{wp.head_dim}, validated max abs diff {wp.validation['max_abs_diff']:.2e}")
        shown = [s for s in wp.inputs if not s.name.startswith("past_key_values.")
                 or s.name.startswith("past_key_values.0.")]
        lines.append("  inputs   " + "; ".join(_axes(s) for s in shown) + "; ... (a key and a value per layer)")
    lines.append(f"files      {len(m.files)} files, {_size(m.total_bytes)}")
    lines += [f"  {name:<28} {_size(f.bytes):>10}  sha256 {f.sha256[:16]}" for name, f in m.files.items()]
    lines += validation_lines(m.validation)
    lines.append("versions   " + ", ".join(f"{k} {v}" for k, v in m.versions.items()))
    return "\n".join(lines)

"""The KV-cache variant of the text-generation head: past key/values as graph inputs and outputs.

    inputs   input_ids, attention_mask, [token_type_ids], position_ids,
             past_key_values.{i}.key / .value                 (batch, heads, past_sequence, head_dim)
    outputs  logits                                            (batch, sequence, vocab)
             present.{i}.key / .value                          (batch, heads, total_sequence, head_dim)

`attention_mask` covers past and new tokens (batch, total_sequence = past_sequence + sequence). Position ids are
an explicit input: the runtime computes them exactly as the model does for the whole sequence (`positions()` in
runtime/pipelines/text_generation.py, described by the manifest's `positions` entry), so a cached step sees the
positions the no-cache graph computes internally, even for RoBERTa's padding_idx + 1 offset and its skipping of
pad ids. The first step feeds an empty past (past_sequence = 0): onnxruntime accepts zero-length dims, and
validation runs that case, so no dummy-token workaround is needed.

Written next to model.onnx as model_with_past.onnx (+ model_with_past.onnx.data when large), exported with
TorchScript (transformers 5's Cache objects are rebuilt inside the wrapper from the flat tensors), and validated
against PyTorch on real text: prefill with an empty past, padded batch, one decode step, the maximum length, and
cached-step logits against the no-cache model's logits on the same sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from encoderforge.errors import ExportError, UnsupportedError, ValidationError
from encoderforge.exporters.onnx_export import export_graph
from encoderforge.manifest import PositionRule, WithPast
from encoderforge.onnx_files import save_graph, value_table
from encoderforge.runtime.pipelines.text_generation import positions

WITH_PAST_FILE = "model_with_past.onnx"
BATCH, SEQUENCE, PAST, TOTAL = "batch", "sequence", "past_sequence", "total_sequence"


def kv_names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def position_rule(model: Any) -> dict[str, Any]:
    """How the model numbers positions: RoBERTa-style embeddings start at padding_idx + 1 and give pad ids the
    position padding_idx; BERT-style ones count from 0."""
    embeddings = model.base_model.embeddings
    if hasattr(type(embeddings), "create_position_ids_from_input_ids"):
        return {"first": int(embeddings.padding_idx) + 1, "pad_id": int(embeddings.padding_idx)}
    return {"first": 0, "pad_id": None}


def cache_module(model: Any, input_names: tuple[str, ...], layers: int) -> Any:
    """forward(input_ids, attention_mask, [token_type_ids], position_ids, *past) -> (logits, *present)."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    named = [*input_names, "position_ids"]

    class WithPast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            kwargs = dict(zip(named, args[: len(named)]))
            past = args[len(named):]
            cache = DynamicCache()
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            output = self.model(**kwargs, past_key_values=cache, use_cache=True, return_dict=True)
            present = output.past_key_values
            if isinstance(present, EncoderDecoderCache):
                present = present.self_attention_cache
            flat = [t for i in range(layers) for t in (present.layers[i].keys, present.layers[i].values)]
            return (output.logits, *flat)

    return WithPast().eval()


def _feed(
    ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray], rule: dict[str, Any], input_names: tuple[str, ...],
    history: np.ndarray,
) -> dict[str, np.ndarray]:
    """Graph feed for new tokens `ids` after `history` (the ids already in the cache, same batch)."""
    full = np.concatenate([history, ids], axis=1)
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        feed["token_type_ids"] = np.zeros_like(ids)
    feed["position_ids"] = positions(full, **rule)[:, history.shape[1]:]
    layers = len(past) // 2
    feed.update(zip(kv_names(layers, "past_key_values"), past))
    return feed


def export_with_past(
    model: Any,
    config: Any,
    tokenizer: Any,
    input_names: tuple[str, ...],
    directory: Path,
    *,
    opset: int,
    tolerance: float,
    max_length: int,
    external_data_threshold: int,
) -> WithPast:
    """Write WITH_PAST_FILE into `directory`, validate it, and return its manifest section."""
    import torch

    from encoderforge.corpus import SENTENCES

    if not getattr(config, "is_decoder", False):
        raise UnsupportedError("with_past needs a decoder (is_decoder=True); export with --task text-generation")
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    rule = position_rule(model)
    wrapped = cache_module(model, input_names, layers)
    graph_inputs = [*input_names, "position_ids", *kv_names(layers, "past_key_values")]
    graph_outputs = ["logits", *kv_names(layers, "present")]

    # Trace on a real prefix with a non-empty past (an empty one would let the tracer fold the past away).
    ids = np.asarray([tokenizer(SENTENCES[0])["input_ids"]], dtype=np.int64)
    if ids.shape[1] < 3:
        raise ExportError("the tokenizer gives fewer than 3 tokens for the trace sentence; cannot trace with_past")
    prefix, rest = ids[:, :-2], ids[:, -2:]
    empty = _empty_past(model, layers, heads, config)
    with torch.no_grad():
        first = wrapped(*_torch_args(_feed(prefix, np.ones_like(prefix), empty, rule, input_names,
                                           prefix[:, :0]), graph_inputs))
    past = [t.numpy() for t in first[1:]]
    example = _feed(rest, np.ones_like(ids), past, rule, input_names, prefix)
    axes: dict[str, dict[int, str]] = {name: {0: BATCH, 1: SEQUENCE} for name in (*input_names, "position_ids")}
    axes["attention_mask"] = {0: BATCH, 1: TOTAL}
    axes["logits"] = {0: BATCH, 1: SEQUENCE}
    axes.update({name: {0: BATCH, 2: PAST} for name in kv_names(layers, "past_key_values")})
    axes.update({name: {0: BATCH, 2: TOTAL} for name in kv_names(layers, "present")})
    graph = export_graph(
        model, wrapped, _torch_args(example, graph_inputs), directory,
        what="torchscript export of the with_past graph", input_names=graph_inputs, output_names=graph_outputs,
        dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True,
    )
    files = save_graph(graph, directory, name=WITH_PAST_FILE, external_data_threshold=external_data_threshold)
    report = validate_with_past(
        wrapped, model, directory / WITH_PAST_FILE, tokenizer, input_names, rule, layers, heads, config,
        tolerance=tolerance, max_length=max_length,
    )
    saved = onnx.load(str(directory / WITH_PAST_FILE), load_external_data=False)
    return WithPast(
        model_file=WITH_PAST_FILE,
        external_data=len(files) > 1,
        exporter="torchscript",
        num_layers=layers,
        num_heads=heads,
        head_dim=int(past[0].shape[-1]),
        positions=PositionRule(int(rule["first"]), rule["pad_id"]),
        inputs=value_table(saved.graph.input),
        outputs=value_table(saved.graph.output),
        validation=report,
    )


def _torch_args(feed: dict[str, np.ndarray], names: list[str]) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(feed[name])) for name in names)


def _empty_past(model: Any, layers: int, heads: int, config: Any, batch: int = 1) -> list[np.ndarray]:
    head_dim = int(config.hidden_size) // heads
    dtype = next(model.parameters()).detach().numpy().dtype
    return [np.zeros((batch, heads, 0, head_dim), dtype=dtype) for _ in range(2 * layers)]


def validate_with_past(
    wrapped: Any, model: Any, path: Path, tokenizer: Any, input_names: tuple[str, ...], rule: dict[str, Any],
    layers: int, heads: int, config: Any, *, tolerance: float, max_length: int,
) -> dict[str, Any]:
    """ORT vs PyTorch on every case, and cached-step logits vs the no-cache model; fail beyond tolerance."""
    import onnxruntime as ort
    import torch

    from encoderforge.corpus import LONG_TEXT, SENTENCES
    from encoderforge.exporters.validation import compare

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    names = [*input_names, "position_ids", *kv_names(layers, "past_key_values")]
    cases: list[dict[str, Any]] = []
    failures: list[str] = []

    def check(case: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            expected = [t.numpy() for t in wrapped(*_torch_args(feed, names))]
        actual = session.run(output_names, feed)
        stats = {name: compare(ref, got) for name, ref, got in zip(output_names, expected, actual)}
        diffs = [float("nan") if s["max_abs_diff"] is None else float(s["max_abs_diff"]) for s in stats.values()]
        worst = float("nan") if any(np.isnan(diffs)) else max(diffs)
        cases.append({"name": case, "input_shape": list(feed["input_ids"].shape),
                      "past_sequence": int(feed[names[len(input_names) + 1]].shape[2]),
                      "max_abs_diff": worst, "logits": stats["logits"]})
        if not worst <= tolerance:  # also catches NaN
            failures.append(f"{case}: max abs diff {worst:.3g}")
        return [np.asarray(a) for a in actual]

    encoded = tokenizer(list(SENTENCES), padding=True, return_tensors="np")
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    mask = np.asarray(encoded["attention_mask"], dtype=np.int64)
    batch = ids.shape[0]
    empty = _empty_past(model, layers, heads, config, batch)
    prefill = check("prefill-empty-past-padded-batch", _feed(ids, mask, empty, rule, input_names, ids[:, :0]))
    step = np.full((batch, 1), ids[0, 1], dtype=np.int64)
    check("decode-step-padded-batch",
          _feed(step, np.concatenate([mask, np.ones_like(step)], 1), prefill[1:], rule, input_names, ids))

    # The proof that matters: a cached step gives the logits the no-cache model gives for the same sequence.
    long_ids = np.asarray([tokenizer(LONG_TEXT, truncation=True, max_length=max_length)["input_ids"]], dtype=np.int64)
    for case, full in (("cached-step-vs-no-cache", long_ids[:, : min(12, max_length)]),
                       (f"cached-step-at-max-length-{max_length}", long_ids)):
        head, last = full[:, :-1], full[:, -1:]
        first = check(f"{case}/prefill", _feed(head, np.ones_like(head), _empty_past(model, layers, heads, config),
                                                rule, input_names, head[:, :0]))
        cached = check(f"{case}/step", _feed(last, np.ones_like(full), first[1:], rule, input_names, head))
        extra: dict[str, Any] = {"attention_mask": torch.ones(full.shape, dtype=torch.long)}
        if "token_type_ids" in input_names:
            extra["token_type_ids"] = torch.zeros(full.shape, dtype=torch.long)
        with torch.no_grad():
            reference = model(input_ids=torch.from_numpy(full), use_cache=False, **extra).logits[:, -1:].numpy()
        stats = compare(reference, cached[0])
        diff = float("nan") if stats["max_abs_diff"] is None else float(stats["max_abs_diff"])
        cases.append({"name": f"{case}/no-cache-reference", "input_shape": list(full.shape),
                      "max_abs_diff": diff, "logits": stats})
        if not diff <= tolerance:  # also catches NaN
            failures.append(f"{case}/no-cache-reference: max abs diff {diff:.3g}")
    report = {"tolerance": tolerance, "backend": "onnxruntime-cpu", "cases": cases,
              "max_abs_diff": max(c["max_abs_diff"] for c in cases), "passed": not failures}
    if failures:
        raise ValidationError(
            f"with_past graph disagrees beyond tolerance {tolerance:g}: {'; '.join(failures)}; "
            "export without --with-past, or raise --tolerance if the difference is expected"
        )
    return report

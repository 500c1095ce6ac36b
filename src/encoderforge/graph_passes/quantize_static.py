"""INT8 static quantization (QDQ), calibrated on real text, with an accuracy budget.

Calibration: `encoderforge.calibration.sources` (text file / JSONL / iterable, tokenized with the artifact's
tokenizer; the built-in corpus when none is given), method ``minmax`` | ``entropy`` | ``percentile``
(onnxruntime.quantization's CalibrationMethod). Ranges are collected once and cached in the workdir, so the
accuracy-budget sweep (`encoderforge.calibration.sensitivity`) re-quantizes without re-calibrating.

Two rule sets decide where Q/DQ pairs go, chosen by target:

CPU (``cpu``): Q/DQ on the inputs of MatMul nodes with a constant weight (Conv / Gemm stay fp32); int8 weights,
    symmetric, per channel on the output-channel axis; uint8 activations, asymmetric (zero point from the
    calibrated range); one DequantizeLinear per consumer, so that onnxruntime fuses every unit into
    MatMulIntegerToFloat (see `qdq_cpu.py` for why the shared pair ran at fp32 speed). CUDA (``cuda``):
    onnxruntime's placement as it is (int8 activations, one shared pair per tensor).

TensorRT (``tensorrt``), for TensorRT's explicit quantization (it takes the graph's Q/DQ as the truth and
    builds INT8 layers exactly where they are):
    1. Q/DQ only on the inputs of MatMul, Gemm and Conv: both the activation input and the weight input
       (weights as int8 initializers followed by DequantizeLinear; TensorRT folds the pair).
    2. No Q/DQ on the inputs or outputs of LayerNormalization, Softmax, residual Add, Gelu/Erf or any
       other op: those run in the precision the rest of the graph has (the fp32 / fp16 islands).
    3. Activations symmetric int8 (zero point 0): TensorRT supports no other activation quantization.
    4. Weights per channel on the output-channel axis (MatMul weight [K, N]: axis 1; Gemm with transB=1
       [N, K]: axis 0; Conv [M, C/g, k]: axis 0), zero point 0.
    5. One Q/DQ pair per tensor shared by all its MatMul consumers (Q/K/V read the same pair).
    `tensorrt_rule_violations(model)` checks a graph against these rules; the pass fails on any violation.

Options (PassContext.options): ``calibration_data`` (path or None: built-in text), ``calibration_method``,
``calibration_samples`` (default 64), ``max_accuracy_drop`` (None: no sweep), ``nodes_to_exclude`` (always fp32),
``calibration_percentile`` (default 99.999), ``smooth_quant_alpha`` (opt-in outlier migration, see
`encoderforge.calibration.smoothing`; at 0.5 it measured worse than without on MiniLM, so it is off).

Counts: ``quantized_nodes``, ``excluded_nodes`` (kept in fp32 by the budget), ``quantize_linear``,
``dequantize_linear``, ``smoothed_activations``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from encoderforge.cpu import current_cpu
from encoderforge.errors import ValidationError
from encoderforge.graph_passes._graph import GraphIndex
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.options import StaticInt8Options
from encoderforge.graph_passes.qdq_cpu import constant_weight_nodes, dedicate_dequantize
from encoderforge.onnx_files import LARGE_GRAPH_BYTES, copy_model

QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class QuantRules:
    name: str
    op_types: tuple[str, ...]
    activation_symmetric: bool
    extra_options: dict[str, Any] = field(default_factory=dict)
    activation_type: str = "int8"  # int8 | uint8
    constant_weights_only: bool = False  # leave activation x activation MatMuls in fp32
    dedicated_dequantize: bool = False  # one DequantizeLinear per consumer (qdq_cpu.py)
    cpu_kernels: bool = False  # runs on this machine's int8 kernels (saturating without VNNI: 7-bit weights there)


# CPU: uint8 activations x int8 weights (VNNI's u8 x s8 dot product, MLAS's fastest path), only MatMuls with a
# constant weight, a DequantizeLinear per consumer so that ORT fuses every unit into MatMulIntegerToFloat.
# Conv / Gemm stay fp32: onnxruntime fuses DQ -> Conv / Gemm only with a Q after them (QLinearConv, QGemm), and
# without one it dequantizes their weights at every call.
CPU_RULES = QuantRules("cpu", ("MatMul",), activation_symmetric=False, activation_type="uint8",
                       constant_weights_only=True, dedicated_dequantize=True, cpu_kernels=True)
# CUDA: onnxruntime's QDQ placement as it is (int8 activations, one shared pair per tensor).
CUDA_RULES = QuantRules("cuda", QUANTIZED_OPS, activation_symmetric=False)
TENSORRT_RULES = QuantRules("tensorrt", QUANTIZED_OPS, activation_symmetric=True,
                            extra_options={"DedicatedQDQPair": True})


def reduce_range_for(rules: QuantRules, options: StaticInt8Options) -> bool:
    """7-bit weights where the graph runs on x86 int8 kernels without VNNI: their u8 x s8 products pass through
    int16 (vpmaddubsw), which saturates on full-range weights (measured: pooled SQNR below 28 dB on an AVX2-only
    CPU against 39-49 dB with VNNI); 255 x 64 x 2 fits. GPU rule sets keep 8 bits (their kernels do not saturate)."""
    if options.reduce_range is not None:
        return bool(options.reduce_range)
    return rules.cpu_kernels and not current_cpu().int8_without_saturation


def validation_optimization(target: str) -> str:
    """The onnxruntime CPU optimization level that checks an int8 graph for `target`: the real fused int8
    kernels for cpu; for GPU targets none, so Q/DQ run as written (exact simulated quantization, as TensorRT's
    int32-accumulating kernels compute it), not through this CPU's integer kernels."""
    return "all" if rules_for(target).cpu_kernels else "disable"


def rules_for(target: str) -> QuantRules:
    return {"tensorrt": TENSORRT_RULES, "cuda": CUDA_RULES}.get(target, CPU_RULES)


def _weight_axis(node: onnx.NodeProto, input_index: int) -> int:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "Conv":
        return 0
    return 1  # MatMul [K, N]: output channels are the last axis (for 2-D weights)


def tensorrt_rule_violations(model: onnx.ModelProto) -> list[str]:
    """Violations of the TensorRT explicit-quantization rule set (see the module docstring)."""
    graph = model.graph
    index = GraphIndex(graph)
    inits, producers, consumers, const = index.initializers, index.producer, index.consumers, index.constant
    problems = []

    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            zero = const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if zero is None or zero.dtype != np.int8 or np.any(zero != 0):
                problems.append(f"{node.name}: activation quantization is not symmetric int8 (zero point "
                                f"{None if zero is None else zero.ravel()[:4]}, {None if zero is None else zero.dtype})")
            source = producers.get(node.input[0])
            if source is not None and source.op_type == "DequantizeLinear":
                problems.append(f"{node.name}: Q directly after DQ (requantization)")
        if node.op_type == "DequantizeLinear":
            for user in consumers.get(node.output[0], []):
                if user.op_type not in QUANTIZED_OPS:
                    problems.append(f"{node.name}: DQ feeds {user.op_type} {user.name!r}; Q/DQ belong only on "
                                    "MatMul/Gemm/Conv inputs")
            weight = node.input[0] in inits
            if weight:
                scale = const(node.input[1])
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                for user in consumers.get(node.output[0], []):
                    if user.op_type in QUANTIZED_OPS:
                        w = inits[node.input[0]]
                        expected_axis = _weight_axis(user, list(user.input).index(node.output[0]))
                        channels = w.dims[expected_axis] if len(w.dims) > expected_axis else 1
                        if scale is None or scale.size != channels or (scale.size > 1 and axis != expected_axis):
                            problems.append(f"{node.name}: weight of {user.name!r} is not per-channel on axis "
                                            f"{expected_axis} (scale size {None if scale is None else scale.size}, "
                                            f"axis {axis})")
                zero = const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                if zero is not None and np.any(zero != 0):
                    problems.append(f"{node.name}: weight zero point is not 0")
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and any(p.op_type == "DequantizeLinear" for p in
                                                       (producers.get(i) for i in node.input[:2]) if p is not None):
            for i in node.input[:2]:
                p = producers.get(i)
                if p is None or p.op_type != "DequantizeLinear":
                    problems.append(f"{node.name}: only one of its inputs is quantized")
    return problems


def detach_non_quantized_consumers(model: onnx.ModelProto) -> int:
    """Rewire every consumer of an activation DQ that is not MatMul/Gemm/Conv (Shape, residual Add,
    LayerNormalization, ...) to the unquantized tensor before the Q, and drop Q/DQ pairs left unused.
    onnxruntime shares one pair among all consumers; rule 2 wants Q/DQ only where INT8 math happens, and the
    residual stream keeps full precision. Returns the number of rewired inputs."""
    graph = model.graph
    producers = GraphIndex(graph).producer
    graph_outputs = {o.name for o in graph.output}
    rewired = 0
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a weight DQ: leave it
            node.input[index] = q.input[0]
            rewired += 1
    used = {i for n in graph.node for i in n.input} | graph_outputs
    changed = True
    while changed:
        changed = False
        for node in list(graph.node):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in node.output):
                graph.node.remove(node)
                changed = True
        used = {i for n in graph.node for i in n.input} | graph_outputs
    return rewired


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul/Gemm/Conv nodes with a DequantizeLinear input."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and any(
        (p := producers.get(i)) is not None and p.op_type == "DequantizeLinear" for i in n.input)]


class StaticInt8Pass:
    name = "int8-static"
    in_place = False

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        from encoderforge.calibration import calibration_method, feed_reader
        from encoderforge.calibration.sensitivity import fit_budget, node_groups
        from encoderforge.calibration.sources import calibration_feeds
        from encoderforge.fidelity import compare_outputs, fidelity_feeds, make_session, pooling_of, run_model
        from encoderforge.graph_passes.fp16 import name_nodes

        options = StaticInt8Options.read(context.options)
        method_name = str(options.calibration_method or "minmax").lower()
        method = calibration_method(method_name)
        budget = options.max_accuracy_drop
        rules = rules_for(context.target)
        reduce_range = reduce_range_for(rules, options)
        workdir = Path(context.workdir) / "int8-static"
        workdir.mkdir(parents=True, exist_ok=True)

        work = copy_model(model)
        name_nodes(work)
        smoothed = 0
        alpha = options.smooth_quant_alpha
        if alpha:
            from encoderforge.calibration.smoothing import smooth

            work, smoothed = smooth(work, calibration_feeds(context.artifact, options.calibration_data,
                                                             samples=int(options.calibration_samples or 64)),
                                    float(alpha))
        source = workdir / "fp32.onnx"
        big = work.ByteSize() > LARGE_GRAPH_BYTES
        onnx.save_model(work, str(source), save_as_external_data=big, location="fp32.onnx.data")
        feeds = calibration_feeds(context.artifact, options.calibration_data,
                                  samples=int(options.calibration_samples or 64))
        if method_name != "minmax":  # histogram calibrators stack every sample: one common length
            from encoderforge.calibration.sources import pad_feeds
            from encoderforge.tokenization import ArtifactTokenizer

            feeds = pad_feeds(feeds, ArtifactTokenizer.from_artifact(context.artifact).pad_id)
        input_names = [i.name for i in work.graph.input]
        cache = workdir / f"calibration-{method_name}.json"
        extra = {"ActivationSymmetric": rules.activation_symmetric, "WeightSymmetric": True,
                 "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                 "OpTypesToExcludeOutputQuantization": list(rules.op_types), **rules.extra_options}
        if method_name == "percentile":
            extra["CalibPercentile"] = float(options.calibration_percentile or 99.999)
        always_excluded = list(options.nodes_to_exclude or [])
        activation_type = options.activation_type or rules.activation_type
        if activation_type not in ("int8", "uint8"):
            raise ValidationError(f"unknown activation_type {activation_type!r}; choose int8 or uint8")
        weights_only = rules.constant_weights_only if options.constant_weights_only is None else options.constant_weights_only
        if weights_only:
            always_excluded += constant_weight_nodes(work, rules.op_types)[1]
        dedicated = rules.dedicated_dequantize if options.dedicated_dequantize is None else options.dedicated_dequantize
        runs = [0]

        def quantize(exclude: list[str]) -> onnx.ModelProto:
            runs[0] += 1
            out = workdir / f"int8-{runs[0]}.onnx"
            logging.getLogger().disabled, was = True, logging.getLogger().disabled  # ORT warns on every call
            try:
                quantize_static(
                    str(source), str(out), feed_reader(feeds, input_names, desc=f"calibrating ({method_name})"),
                    quant_format=QuantFormat.QDQ, op_types_to_quantize=list(rules.op_types), per_channel=True,
                    reduce_range=reduce_range, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
                    nodes_to_exclude=[*always_excluded, *exclude], calibrate_method=method, extra_options=dict(extra),
                    calibration_cache_path=str(cache), use_external_data_format=big,
                )
            finally:
                logging.getLogger().disabled = was
            quantized = onnx.load(str(out))
            detach_non_quantized_consumers(quantized)
            if dedicated:
                dedicate_dequantize(quantized)
            return quantized

        notes = [f"rules: {rules.name}", f"calibration: {method_name}, {len(feeds)} samples",
                 f"activations: {activation_type}"]
        if reduce_range:
            notes.append("weights: 7-bit (reduce_range: this CPU's int8 kernels saturate without VNNI)")
        if smoothed:
            notes.append(f"smoothquant alpha {alpha}: {smoothed} activations smoothed")
        manifest_sweep: dict[str, Any] | None = None
        if budget is None:
            quantized = quantize([])
            excluded: list[str] = []
        else:
            eval_feeds = fidelity_feeds(context.artifact)
            reference = run_model(make_session(model), eval_feeds)
            pooling = pooling_of(context.artifact)
            level = validation_optimization(context.target)

            def measure(candidate: onnx.ModelProto) -> float:
                return compare_outputs(reference, run_model(make_session(candidate, optimization=level), eval_feeds),
                                       eval_feeds, pooling=pooling).accuracy_drop

            sweep = fit_budget(quantize, measure, node_groups(work, rules.op_types), float(budget))
            quantized, excluded = sweep.model, sweep.excluded_nodes
            manifest_sweep = sweep.as_manifest()
            notes.append(f"accuracy budget {float(budget):g}: drop {sweep.full_drop:.4g} -> {sweep.drop:.4g}, "
                         f"kept in fp32: {', '.join(sweep.excluded_groups) or 'nothing'}")
            if sweep.sensitivity:
                notes.append("sensitivity (drop with the group kept in fp32): " + ", ".join(
                    f"{g}={d:.3g}" for g, d in sorted(sweep.sensitivity.items(), key=lambda kv: kv[1])))
        if rules.name == "tensorrt":
            problems = tensorrt_rule_violations(quantized)
            if problems:
                raise ValidationError(f"INT8 graph breaks the TensorRT Q/DQ rules: {'; '.join(problems[:5])}")
        ops = Counter(n.op_type for n in quantized.graph.node)
        result = PassResult(
            self.name,
            counts={"quantized_nodes": len(quantized_nodes(quantized)), "excluded_nodes": len(excluded),
                    "quantize_linear": ops.get("QuantizeLinear", 0), "dequantize_linear": ops.get("DequantizeLinear", 0),
                    "smoothed_activations": smoothed},
            notes=tuple(notes),
            details={"rules": rules.name, "calibration": {"method": method_name, "samples": len(feeds)},
                     "reduce_range": reduce_range,
                     "sweep": manifest_sweep},
        )
        return quantized, result


PASSES.register("int8-static", StaticInt8Pass())

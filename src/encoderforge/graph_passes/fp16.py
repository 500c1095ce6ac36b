"""FP16: a strongly typed fp16 graph with explicit Casts, usable where no precision flag exists (TensorRT 11
builds strongly typed networks: the graph's own types decide each layer's precision).

What the pass does, in order:

1. Mask constants. Additive attention masks are built from ``-inf`` or ``finfo(float32).min`` (-3.4e38);
   in fp16 those are -inf, and ``0 * -inf`` / ``-inf + -inf - (-inf)`` give NaN. Every float constant
   (initializers, ``Constant`` and ``ConstantOfShape`` values) whose magnitude does not fit fp16 is rewritten
   to ``mask_value`` (default -1e4, sign kept): far below any real attention score, safe to add twice.
2. fp32 islands from observed ranges. The fp32 graph (with the rewritten constants) runs on calibration text
   (``calibration_data`` or the built-in corpus) with every intermediate exposed; a node whose float input
   or output exceeds ``fp16_threshold`` (default 2**14, four times headroom below fp16's 65504) or is
   non-finite stays in fp32. No fixed list of "dangerous" layers.
3. Accumulation safety. LayerNormalization (and ORT's Skip/Simplified variants), Softmax, reductions, Pow
   and Sqrt always run in fp32: their inputs are cast up, their outputs cast back down (an fp32 stash for
   mean / variance and the exp-sum).
4. Conversion with onnxruntime.transformers.float16 (``keep_io_types``: int64 inputs, fp32 outputs), then a
   topological sort, removal of the fp32 -> fp16 -> fp32 Cast round trips the converter leaves between two
   fp32 nodes (they would overflow exactly the tensors an island protects), and a strict type check:
   every tensor has one explicit element type.

Counts: ``mask_constants`` rewritten, ``fp32_islands`` chosen from ranges, ``fp32_accumulation_nodes``,
``casts`` in the result, ``fp16_nodes``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from encoderforge.errors import ValidationError
from encoderforge.graph_passes._graph import GraphIndex, topological_sort
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.options import Fp16Options
from encoderforge.onnx_files import copy_model

FP16_MAX = 65504.0
DEFAULT_THRESHOLD = 2.0**14
DEFAULT_MASK_VALUE = -1e4
ACCUMULATION_OPS = (
    "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization", "EmbedLayerNormalization", "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Pow", "Sqrt",
)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (block lists and reports refer to nodes by name)."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}" if f"{node.op_type}_{index}" not in seen else f"node_{index}"
        seen.add(node.name)


def _safe(array: np.ndarray, mask_value: float) -> tuple[np.ndarray, int]:
    bad = ~np.isnan(array) & (np.abs(array) > FP16_MAX)
    count = int(bad.sum())
    if count:
        array = array.copy()
        array[bad] = np.sign(array[bad]) * abs(mask_value)
    return array, count


def _rewrite_tensor(tensor: onnx.TensorProto, mask_value: float) -> int:
    if tensor.data_type != onnx.TensorProto.FLOAT or tensor.data_location == onnx.TensorProto.EXTERNAL:
        return 0
    array = numpy_helper.to_array(tensor)
    fixed, count = _safe(array, mask_value)
    if count:
        tensor.CopyFrom(numpy_helper.from_array(fixed.astype(np.float32), tensor.name))
    return count


def rewrite_mask_constants(model: onnx.ModelProto, mask_value: float = DEFAULT_MASK_VALUE) -> int:
    """Rewrite float constants that overflow fp16 (-inf, finfo.min, ...) to +-|mask_value|; returns how many
    constants changed."""
    changed = 0
    for init in model.graph.initializer:
        changed += bool(_rewrite_tensor(init, mask_value))
    for node in model.graph.node:
        if node.op_type in ("Constant", "ConstantOfShape"):
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    changed += bool(_rewrite_tensor(attr.t, mask_value))
                elif attr.name in ("value_float",) and abs(attr.f) > FP16_MAX:
                    attr.f = float(np.sign(attr.f) * abs(mask_value))
                    changed += 1
    return changed


def fold_cast_round_trips(model: onnx.ModelProto) -> int:
    """Between two fp32 nodes the converter leaves fp32 -> Cast(fp16) -> Cast(fp32): an overflow (and a
    rounding) for exactly the tensors an island exists to protect. Rewire the fp32 consumer to the original
    fp32 tensor and drop casts left unused. Returns the number of rewired inputs."""
    from encoderforge.calibration.ranges import inferred_types

    graph = model.graph
    types = inferred_types(model)
    producers = GraphIndex(graph).producer
    outputs = {o.name for o in graph.output}
    rewired = 0
    for node in graph.node:
        for index, name in enumerate(node.input):
            up = producers.get(name)
            if up is None or up.op_type != "Cast" or _cast_to(up) != onnx.TensorProto.FLOAT:
                continue
            down = producers.get(up.input[0])
            if down is None or down.op_type != "Cast" or _cast_to(down) != onnx.TensorProto.FLOAT16:
                continue
            if types.get(down.input[0]) == onnx.TensorProto.FLOAT:
                node.input[index] = down.input[0]
                rewired += 1
    changed = True
    while changed:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and not any(o in used for o in n.output)]
        for n in dead:
            graph.node.remove(n)
        changed = bool(dead)
    return rewired


def _cast_to(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), 0)


def choose_islands(
    model: onnx.ModelProto, ranges: dict[str, Any], threshold: float
) -> dict[str, tuple[float, str]]:
    """{node name: (max |x|, tensor)} for nodes whose float input or output exceeds `threshold` or is
    non-finite in the fp32 run."""
    islands: dict[str, tuple[float, str]] = {}
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape", "Cast") and node.op_type != "Cast":
            continue
        worst = (0.0, "")
        hit = False
        for tensor in [*node.input, *node.output]:
            observed = ranges.get(tensor)
            if observed is None:
                continue
            if not observed.finite or observed.max_abs > threshold:
                hit = True
                value = observed.max_abs if observed.finite else float("inf")
                if value >= worst[0]:
                    worst = (value, tensor)
        if hit:
            islands[node.name] = worst
    return islands


def check_strongly_typed(model: onnx.ModelProto) -> None:
    """Every op's inputs agree on element types (strict shape/type inference); raises ValidationError."""
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises InferenceError / ValidationError subclasses
        raise ValidationError(f"fp16 graph is not consistently typed: {exc}") from exc


class Fp16Pass:
    name = "fp16"
    in_place = False

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        from encoderforge.calibration.ranges import observe_ranges
        from encoderforge.calibration.sources import calibration_feeds

        options = Fp16Options.read(context.options)
        threshold = float(options.fp16_threshold or DEFAULT_THRESHOLD)
        mask_value = float(options.fp16_mask_value or DEFAULT_MASK_VALUE)
        auto_islands = bool(options.fp16_auto_islands)
        extra_block = tuple(options.fp16_keep_fp32_nodes or ())

        work = copy_model(model)
        name_nodes(work)
        masks = rewrite_mask_constants(work, mask_value)

        islands: dict[str, tuple[float, str]] = {}
        if auto_islands:
            feeds = calibration_feeds(context.artifact, options.calibration_data,
                                      samples=int(options.calibration_samples or 32))
            ranges = observe_ranges(work, feeds, desc="fp16 ranges")
            islands = choose_islands(work, ranges, threshold)
        op_block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(ACCUMULATION_OPS))
        accumulation = [n.name for n in work.graph.node if n.op_type in ACCUMULATION_OPS]
        node_block = sorted(set(islands) | set(extra_block))
        casts_before = sum(n.op_type == "Cast" for n in work.graph.node)

        converted = convert_float_to_float16(
            work, keep_io_types=True, op_block_list=op_block, node_block_list=node_block,
            max_finite_val=FP16_MAX,
        )
        try:
            topological_sort(converted.graph)  # the fp16 converter appends its Casts at the end
        except ValueError as exc:
            raise ValidationError(f"fp16 graph cannot be ordered: {exc}") from exc
        round_trips = fold_cast_round_trips(converted)
        check_strongly_typed(converted)

        types = Counter(n.op_type for n in converted.graph.node)
        casts = types.get("Cast", 0) - casts_before
        fp16_nodes = _count_fp16_nodes(converted)
        notes = [f"mask constants beyond fp16 rewritten to {mask_value:g}: {masks}",
                 f"fp32 island threshold max|x| > {threshold:g}"]
        notes += [f"fp32 island {name}: max|x| {value:.4g} at {tensor}" for name, (value, tensor) in sorted(islands.items())]
        result = PassResult(
            self.name,
            counts={"mask_constants": masks, "fp32_islands": len(islands), "fp32_accumulation_nodes": len(accumulation),
                    "casts": casts, "fp16_nodes": fp16_nodes, "cast_round_trips_removed": round_trips},
            notes=tuple(notes),
            details={"fp32_islands": {name: {"max_abs": value, "tensor": tensor}
                                      for name, (value, tensor) in sorted(islands.items())}},
        )
        return converted, result


def _count_fp16_nodes(model: onnx.ModelProto) -> int:
    from encoderforge.calibration.ranges import inferred_types

    types = inferred_types(model)
    return sum(any(types.get(o) == onnx.TensorProto.FLOAT16 for o in n.output) for n in model.graph.node
               if n.op_type not in ("Cast", "Constant"))


def island_nodes(result: PassResult) -> list[str]:
    """Node names of the fp32 islands the pass chose (its `details`)."""
    return list(result.details.get("fp32_islands", {}))


PASSES.register("fp16", Fp16Pass())

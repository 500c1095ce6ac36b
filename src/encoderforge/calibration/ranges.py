"""Observed activation ranges: run the fp32 graph with every float intermediate exposed as an output and
record max |x| (and whether anything was non-finite) per tensor. Used to choose FP16's fp32 islands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from encoderforge.calibration import progress
from encoderforge.onnx_files import copy_model

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)


@dataclass(frozen=True)
class TensorRange:
    max_abs: float
    finite: bool = True


def inferred_types(model: onnx.ModelProto) -> dict[str, int]:
    """elem_type of every value the shape inference can type (inputs, outputs, value_info, initializers)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 -- onnx raises for >2 GB protos and some contrib ops; fall back to what the model declares
        inferred = model
    types = {}
    for value in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for init in inferred.graph.initializer:
        types[init.name] = init.data_type
    return types


def expose_intermediates(model: onnx.ModelProto, *, dtypes: tuple[int, ...] = FLOAT_TYPES) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` whose graph outputs also include every typed node output of the given dtypes."""
    types = inferred_types(model)
    exposed = copy_model(model)
    existing = {o.name for o in exposed.graph.output}
    names = []
    for node in exposed.graph.node:
        for out in node.output:
            if out and out not in existing and types.get(out) in dtypes:
                exposed.graph.output.append(onnx.helper.make_tensor_value_info(out, types[out], None))
                existing.add(out)
                names.append(out)
    return exposed, names


def observe_ranges(model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]], *, desc: str = "observing ranges") -> dict[str, TensorRange]:
    """max |x| of every float tensor (node outputs and graph outputs) of `model` over `feeds`."""
    from encoderforge.fidelity import make_session

    exposed, _ = expose_intermediates(model)
    session = make_session(exposed, optimization="disable")  # keep every intermediate as written
    names = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}
    peak: dict[str, float] = {}
    finite: dict[str, bool] = {}
    for feed in progress(feeds, desc=desc, total=len(feeds)):
        values = session.run(names, {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(names, values):
            arr = np.asarray(value)
            if arr.dtype.kind != "f" or arr.size == 0:
                continue
            ok = bool(np.isfinite(arr).all())
            m = float(np.max(np.abs(arr[np.isfinite(arr)]))) if arr.size and np.isfinite(arr).any() else 0.0
            peak[name] = max(peak.get(name, 0.0), m)
            finite[name] = finite.get(name, True) and ok
    return {n: TensorRange(peak[n], finite[n]) for n in peak}

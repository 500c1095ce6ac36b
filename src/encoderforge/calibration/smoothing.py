"""SmoothQuant-style outlier migration for static INT8 (option ``smooth_quant_alpha``, off by default).

Per-tensor activation scales lose resolution when a few channels carry outliers (LayerNorm outputs of
trained transformers do: MiniLM's [CLS]/[SEP] rows). For every activation X read by MatMuls with a 2-D
weight W [K, N], with per-channel ranges a_k = max |X[..., k]| (observed on calibration text) and
w_k = max |W[k, :]|, the scale s_k = a_k^alpha / w_k^(1 - alpha) moves the outliers into the weights:

    X @ W == (X * (1 / s)) @ (s[:, None] * W)

The graph gets one Mul per smoothed activation (the residual stream keeps the unscaled X); the MatMuls
read X / s, which quantizes per tensor with far less loss, and their weights are quantized per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from encoderforge.calibration import progress
from encoderforge.onnx_files import copy_model


def _channel_peaks(model: onnx.ModelProto, tensors: Sequence[str], feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    from encoderforge.calibration.ranges import inferred_types
    from encoderforge.fidelity import make_session

    types = inferred_types(model)
    exposed = copy_model(model)
    existing = {o.name for o in exposed.graph.output}
    for name in tensors:
        if name not in existing:
            exposed.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, 1), None))
    session = make_session(exposed, optimization="disable")
    inputs = {i.name for i in session.get_inputs()}
    peaks: dict[str, np.ndarray] = {}
    for feed in progress(feeds, desc="smoothing ranges", total=len(feeds)):
        mask = feed.get("attention_mask")
        values = session.run(list(tensors), {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(tensors, values):
            arr = np.abs(np.asarray(value, dtype=np.float32))
            if mask is not None and arr.shape[:-1] == mask.shape:
                arr = arr[mask.astype(bool)]
            peak = arr.reshape(-1, arr.shape[-1]).max(axis=0)
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks


def smooth(model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]], alpha: float = 0.5) -> tuple[onnx.ModelProto, int]:
    """A smoothed copy of `model` and the number of activations smoothed."""
    work = copy_model(model)
    graph = work.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2 \
                and node.input[0] not in inits:
            readers.setdefault(node.input[0], []).append(node)
    if not readers:
        return work, 0
    peaks = _channel_peaks(work, list(readers), feeds)
    position = {id(n): i for i, n in enumerate(graph.node)}
    inserts: list[tuple[int, onnx.NodeProto]] = []
    for tensor, nodes in readers.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        act = peaks.get(tensor)
        if act is None or any(w.shape[0] != act.shape[0] for w in weights):
            continue
        wmax = np.max(np.stack([np.abs(w).max(axis=1) for w in weights]), axis=0)
        scale = (np.maximum(act, 1e-5) ** alpha) / (np.maximum(wmax, 1e-5) ** (1 - alpha))
        scale = np.clip(scale, 1e-4, 1e4).astype(np.float32)
        inv_name, out_name = f"{tensor}_smooth_inv", f"{tensor}_smoothed"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv_name))
        mul = onnx.helper.make_node("Mul", [tensor, inv_name], [out_name], name=f"{tensor}_smooth")
        for node, weight in zip(nodes, weights):
            new_name = f"{node.input[1]}_smoothed_{node.name}"
            graph.initializer.append(numpy_helper.from_array((weight * scale[:, None]).astype(np.float32), new_name))
            node.input[1] = new_name
            node.input[0] = out_name
        inserts.append((min(position[id(n)] for n in nodes), mul))
    for index, mul in sorted(inserts, key=lambda t: -t[0]):
        graph.node.insert(index, mul)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return work, len(inserts)

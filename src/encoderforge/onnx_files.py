"""Writing ONNX graphs into an artifact: one place for file names, the external-data rule and the I/O table.

Protobuf cannot hold a message over 2 GiB, so a graph whose weights pass the threshold is written as
`<name>` + `<name>.data` (all tensors in one file). Torch-free: used by the exporters and the graph passes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx

from encoderforge.manifest import TensorSpec

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
# The graph-size limits, in one place.
PROTOBUF_MAX = 2**31 - 1  # the largest message protobuf serializes
PROTOBUF_LIMIT = 2**31 - 2**26  # weights that still fit one message: 2 GiB less room for the graph itself
LARGE_GRAPH_BYTES = 1_800_000_000  # above this, passes work with external data (or skip ONNX's own checks)
# Overridable (tests lower it to exercise the external-data path on a tiny model).
EXTERNAL_DATA_THRESHOLD = int(os.environ.get("ENCODERFORGE_EXTERNAL_DATA_THRESHOLD", str(LARGE_GRAPH_BYTES)))


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy (passes that rewrite a graph work on one, leaving their input as it was)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def weight_bytes(graph: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in graph.graph.initializer)


def needs_external_data(graph: onnx.ModelProto, threshold: int = EXTERNAL_DATA_THRESHOLD) -> bool:
    return weight_bytes(graph) > min(threshold, PROTOBUF_LIMIT)


def save_graph(graph: onnx.ModelProto, directory: Path, *, name: str = MODEL_FILE,
               external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[str]:
    """Write `directory/name` (+ `name.data` when large); return the file names written."""
    target = Path(directory) / name
    if needs_external_data(graph, external_data_threshold):
        onnx.save_model(graph, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{name}.data", size_threshold=1024)
        return [name, f"{name}.data"]
    onnx.save_model(graph, str(target))
    return [name]


def value_table(values: Any) -> tuple[TensorSpec, ...]:
    """Manifest rows for graph inputs or outputs: name, numpy dtype, axes (symbolic names or sizes)."""
    table = []
    for value in values:
        tensor = value.type.tensor_type
        table.append(TensorSpec(value.name, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                                tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)))
    return tuple(table)

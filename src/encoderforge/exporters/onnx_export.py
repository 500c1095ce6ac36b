"""Trace a reference model to ONNX: named inputs/outputs, dynamic axes, opset >= 17, external data when large."""

from __future__ import annotations

import io
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from encoderforge.errors import ExportError
from encoderforge.exporters.families import Exporter
from encoderforge.onnx_files import EXTERNAL_DATA_THRESHOLD, save_graph
from encoderforge.tasks import TaskHead

MIN_OPSET = 17  # LayerNormalization is one op from opset 17 on
DYNAMO_OPSET = 18  # the dynamo exporter's native opset; at 17 its Split(num_outputs) is invalid


def head_module(model: Any, head: TaskHead, input_names: tuple[str, ...]) -> Any:
    """A module whose forward takes the family's inputs positionally and returns the head's outputs as a tuple."""
    import torch

    class HeadOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            kwargs: dict[str, Any] = dict(zip(input_names, inputs))
            if head.causal:
                kwargs["use_cache"] = False
            output = self.model(**kwargs, return_dict=True)
            return tuple(getattr(output, spec.name) for spec in head.outputs)

    return HeadOutputs().eval()


def dynamic_axes(head: TaskHead, input_names: tuple[str, ...]) -> dict[str, dict[int, str]]:
    axes = {name: dict(enumerate(head.input_axes)) for name in input_names}
    for spec in head.outputs:
        axes[spec.name] = {i: axis for i, axis in enumerate(spec.axes) if axis is not None}
    return axes


def trace(
    model: Any,
    head: TaskHead,
    input_names: tuple[str, ...],
    example: dict[str, np.ndarray],
    directory: Path,
    *,
    exporter: Exporter,
    opset: int,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> list[str]:
    """Export to `directory/model.onnx` (+ model.onnx.data when large); return the files written."""
    import torch

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use --opset {MIN_OPSET} or newer (LayerNormalization)")
    wrapped = head_module(model, head, input_names)
    args = tuple(torch.from_numpy(example[name]) for name in input_names)
    output_names = [spec.name for spec in head.outputs]
    other = "torchscript" if exporter == "dynamo" else "dynamo"
    graph = export_graph(
        model, wrapped, args, directory, what=f"{exporter} export of {head.name!r}", hint=f"try --exporter {other}",
        input_names=list(input_names), output_names=output_names, opset_version=opset,
        dynamo=exporter == "dynamo", do_constant_folding=True,
        **(_dynamo_options(head, input_names) if exporter == "dynamo"
           else {"dynamic_axes": dynamic_axes(head, input_names)}),
    )
    _rename_dynamic_dims(graph, head, input_names)
    return save_graph(graph, directory, external_data_threshold=external_data_threshold)


def export_graph(model: Any, wrapped: Any, args: tuple[Any, ...], directory: Path, *, what: str, hint: str = "",
                 **export_options: Any) -> onnx.ModelProto:
    """Run torch.onnx.export quietly into a scratch file under `directory` and load the graph (with its weights).
    Any failure is one ExportError naming `what`; the module is put back in eval mode either way."""
    import torch

    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        raw = Path(scratch) / "raw.onnx"
        captured = io.StringIO()
        try:
            with torch.no_grad(), redirect_stdout(captured), redirect_stderr(captured):
                torch.onnx.export(wrapped, args, str(raw), **export_options)
        except Exception as exc:  # torch raises many types; all mean the same thing to the user
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{what} failed: {first_line}" + (f"; {hint}" if hint else "")) from exc
        finally:
            model.eval()  # the TorchScript exporter can leave the module in training mode
        return onnx.load(str(raw), load_external_data=True)


def _dynamo_options(head: TaskHead, input_names: tuple[str, ...]) -> dict[str, Any]:
    """torch.export wants dynamic_shapes; `*inputs` is one varargs parameter holding every input."""
    from torch.export import Dim

    per_input = tuple({i: Dim.DYNAMIC for i in range(len(head.input_axes))} for _ in input_names)
    return {"dynamic_shapes": (per_input,), "external_data": True, "optimize": True}


def _rename_dynamic_dims(graph: onnx.ModelProto, head: TaskHead, input_names: tuple[str, ...]) -> None:
    """The dynamo exporter names dims s0, s1...; give every graph the same symbolic names."""
    axes = dynamic_axes(head, input_names)
    for value in [*graph.graph.input, *graph.graph.output]:
        for index, axis in axes.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[index]
            dim.dim_param = axis

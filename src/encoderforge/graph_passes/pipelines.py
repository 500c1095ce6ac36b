"""Pipelines: for each (target, precision), the names of the passes to run, in order.

Chosen by measurement (benchmarks/passes_cpu.py, numbers in benchmarks/results/), not by habit:
- cpu fp32: our attention fusion only. On roberta-base it measured 0.92-1.04x the standard export's time
  (5 runs, shared 2-core machine: not distinguishable from noise, never clearly slower), so it stays: it
  removes the transformers-5 mask subgraph and is what the int8 path builds on. Fusing Add + LayerNorm
  into SkipLayerNormalization made CPU inference *slower* each time we measured it (+3-10%), whether done
  offline by ORT's optimizer (`ort-fusions`) or by the session once shapes are known (`infer-shapes`), so
  CPU pipelines leave the residual Add + LayerNorm alone and only verify what the session fuses at load
  time (`session-fusions`: the erf Gelu, expected once per layer).
- cpu int8-dynamic: attention fusion, then dynamic int8 on every MatMul with a constant weight (roberta-base:
  parity with ORT's quantize_dynamic, 0.92-1.07x, with better SQNR; conv-bert-base: 0.65-0.71x of it,
  because convolutions and the activation x activation products of the dynamic convolution stay fp32
  instead of going through ConvInteger).
- cpu int8-static: the SDPA NaN guard dropped (`drop-sdpa-guards`: OpenVINO then fuses attention, about 3 %
  on roberta-base; ORT is no slower), then the QDQ pass with its cpu rule set (uint8 activations x int8
  weights, a DQ per consumer, constant-weight MatMuls only: every unit becomes MatMulIntegerToFloat). roberta-base, 1 thread:
  1.01x int8-dynamic's time at b1, 1.09x at b8 (the old rules: 2.0x / 1.56x); standard ops only, so the same
  graph also runs on OpenVINO (0.79x / 0.76x of int8-dynamic on ORT). Numbers: benchmarks/results/int8_cpu_engines.md.
- cuda: attention fusion + ORT's offline fusions (contrib CUDA kernels); fp16 and int8-static via their passes.
- tensorrt: no com.microsoft contrib ops (TensorRT cannot parse them): only the precision pass, which
  writes a strongly typed fp16 graph or explicit QDQ placed by TensorRT's rules.
A pipeline names passes; `PASSES` resolves the names, so an unknown name fails loudly, never silently.
"""

from __future__ import annotations

import importlib

from encoderforge.errors import UnknownKeyError, UnsupportedError
from encoderforge.graph_passes.base import PASSES, GraphPass
from encoderforge.manifest import Precision, Target
from encoderforge.manifest.enums import PRECISION_CHOICES

TARGETS = tuple(t.value for t in Target)
PRECISIONS = tuple(p.value for p in Precision)
FUSIONS = ("fuse-attention", "ort-fusions")
CPU_FUSIONS = ("fuse-attention", "session-fusions")

PASS_PIPELINES: dict[tuple[str, str], tuple[str, ...]] = {
    ("cpu", "fp32"): CPU_FUSIONS,
    ("cpu", "int8-dynamic"): ("fuse-attention", "int8-dynamic", "session-fusions"),
    ("cpu", "int8-static"): ("drop-sdpa-guards", "int8-static"),
    ("cuda", "fp32"): FUSIONS,
    ("cuda", "fp16"): ("fp16",),
    ("cuda", "int8-static"): ("int8-static",),
    ("tensorrt", "fp32"): (),
    ("tensorrt", "fp16"): ("fp16",),
    ("tensorrt", "int8-static"): ("int8-static",),
}

_WHY_NOT = {
    ("cpu", "fp16"): "onnxruntime has no fast fp16 kernels on CPU (it would be slower than fp32); "
                     "use --precision fp32 or int8-dynamic on cpu, or --target cuda / tensorrt for fp16",
    ("cuda", "int8-dynamic"): "dynamic int8 kernels (DynamicQuantizeMatMul) exist on CPU only; "
                              "use --precision int8-static (QDQ) or fp16 on cuda",
    ("tensorrt", "int8-dynamic"): "TensorRT quantizes through explicit QDQ only; use --precision int8-static",
}

# Where each pass lives: imported on first use, so a pipeline never needs modules it does not run.
PASS_MODULES = {
    "fuse-attention": "encoderforge.graph_passes.fusion_attention",
    "ort-fusions": "encoderforge.graph_passes.fusion_ort",
    "infer-shapes": "encoderforge.graph_passes.infer_shapes",
    "session-fusions": "encoderforge.graph_passes.session_fusions",
    "pack-qkv": "encoderforge.graph_passes.fusion_packed_qkv",
    "int8-dynamic": "encoderforge.graph_passes.quantize_dynamic",
    "fp16": "encoderforge.graph_passes.fp16",
    "int8-static": "encoderforge.graph_passes.quantize_static",
    "int8-static-nncf": "encoderforge.graph_passes.quantize_nncf",
    "drop-sdpa-guards": "encoderforge.graph_passes.sdpa_guards",
}


def pipeline(target: str, precision: str) -> tuple[str, ...]:
    if target not in TARGETS:
        raise UnknownKeyError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    if precision not in PRECISIONS:
        raise UnknownKeyError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISION_CHOICES)}")
    if (target, precision) in _WHY_NOT:
        raise UnsupportedError(f"--target {target} --precision {precision} is not supported: "
                               f"{_WHY_NOT[(target, precision)]}")
    return PASS_PIPELINES[(target, precision)]


def default_precision(target: str) -> str:
    """What --precision means when left out: auto on cpu (measured there), fp32 elsewhere."""
    return "auto" if target == "cpu" else "fp32"


def check_choice(target: str, precision: str) -> tuple[str, ...]:
    """The passes a --target / --precision choice may run (auto: all its candidates'); bad choices fail here."""
    if precision == "auto":
        from encoderforge.graph_passes.auto import auto_passes

        if target not in TARGETS:
            raise UnknownKeyError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
        return auto_passes(target)
    return pipeline(target, precision)


def resolve(name: str) -> GraphPass:
    """The registered pass called `name`, importing its module first if needed."""
    if name not in PASSES and name in PASS_MODULES:
        importlib.import_module(PASS_MODULES[name])
    return PASSES.get(name)

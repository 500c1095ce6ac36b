"""Build a serialized TensorRT engine from an artifact's ONNX graph with the TensorRT Python API.

    trt.Builder -> create_network(STRONGLY_TYPED) -> OnnxParser.parse_from_file(model.onnx)
      -> one optimization profile per length bucket -> timing cache -> build_serialized_network

Strong typing (the default) takes every tensor's type from the graph: the fp16 casts and INT8 Q/DQ nodes the
passes wrote decide the precision, exactly as onnxruntime ran it. That is the only mode TensorRT 11 has (its
precision flags and INT8 calibrators are gone, and the STRONGLY_TYPED flag is accepted and ignored there).
`typing="weak"` is kept for TensorRT 10 only: it sets the FP16 / INT8 builder flags the graph's precision
asks for, and is refused with a clear message where those flags no longer exist.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import onnx

if TYPE_CHECKING:
    import tensorrt as trt

from encoderforge.engines.profiles import Profile
from encoderforge.errors import EncoderForgeError, UnsupportedError
from encoderforge.runtime.backends.tensorrt import require_tensorrt

log = logging.getLogger(__name__)

Typing = Literal["strong", "weak"]
# Builder flags a weakly typed build sets for the graph's precision (TensorRT 10 only).
WEAK_FLAGS: Mapping[str, tuple[str, ...]] = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}
# Ops TensorRT's ONNX parser does not know: onnxruntime's contrib fusions and dynamic quantization.
_UNPARSEABLE_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}


class EngineBuildError(EncoderForgeError):
    """TensorRT could not parse the graph or build an engine from it."""


@dataclass(frozen=True, kw_only=True)
class BuildSettings:
    """How to build; None means TensorRT's default."""

    typing: Typing = "strong"
    timing_cache: Path | None = None  # read before and written after the build; created when missing
    workspace_gib: float | None = None
    optimization_level: int | None = None  # builder_optimization_level 0..5 (TensorRT default 3)

    def __post_init__(self) -> None:
        if self.typing not in ("strong", "weak"):
            raise UnsupportedError(f"unknown typing {self.typing!r}; choose strong or weak (TensorRT 10 only)")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise UnsupportedError(f"optimization level {self.optimization_level} is outside 0..5")
        if self.workspace_gib is not None and self.workspace_gib <= 0:
            raise UnsupportedError(f"workspace {self.workspace_gib} GiB must be positive")


def preflight(model_path: Path) -> None:
    """Refuse graphs TensorRT cannot parse, naming the ops and the fix, before spending minutes on a build."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    contrib = sorted({n.op_type for n in graph.node if n.domain == "com.microsoft"})
    dynamic = sorted({n.op_type for n in graph.node if n.op_type in _UNPARSEABLE_OPS})
    if contrib:
        raise UnsupportedError(
            f"{model_path.name} uses onnxruntime contrib ops ({', '.join(contrib)}) that TensorRT cannot parse; "
            "build engines from the exported graph or one optimized for --target tensorrt"
        )
    if dynamic:
        raise UnsupportedError(
            f"{model_path.name} is dynamically quantized ({', '.join(dynamic)}), which TensorRT does not run; "
            "use the static INT8 Q/DQ graph (int8-static) or the fp16 graph"
        )


def weak_flags(trt: Any, precision: str) -> list[Any]:
    """The TensorRT 10 builder flags for a weakly typed build of a graph with this precision."""
    if precision not in WEAK_FLAGS:
        raise UnsupportedError(f"unknown graph precision {precision!r}; expected one of {sorted(WEAK_FLAGS)}")
    missing = [name for name in WEAK_FLAGS[precision] if not hasattr(trt.BuilderFlag, name)]
    if missing:
        raise UnsupportedError(
            f"TensorRT {trt.__version__} has no BuilderFlag {', '.join(missing)} (weak typing was removed in 11); "
            "build with typing='strong' from a graph whose precision the passes set (fp16 casts, INT8 Q/DQ)"
        )
    return [getattr(trt.BuilderFlag, name) for name in WEAK_FLAGS[precision]]


def network_flags(trt: Any, typing: Typing) -> int:
    """create_network flags: STRONGLY_TYPED where the enum has it (required on 10, default and ignored on 11)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(flag) if typing == "strong" and flag is not None else 0


def _parse(network: trt.INetworkDefinition, logger: trt.ILogger, model_path: Path) -> None:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):  # resolves external data next to the file
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {model_path}: {'; '.join(errors) or 'no detail'}; "
                               "check that the graph's ops are supported by this TensorRT version")


def _read_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> None:
    path = None if path is None else path.expanduser()
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        raise EngineBuildError(f"TensorRT refused the timing cache {path}; delete it to start a new one")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_serialized(
    model_path: Path,
    input_axes: Mapping[str, Sequence[str | int | None]],
    profiles: Sequence[Profile],
    *,
    precision: str,
    settings: BuildSettings,
) -> bytes:
    """Parse the ONNX graph and build a serialized engine with one optimization profile per bucket."""
    require_tensorrt()
    import tensorrt as trt  # typed by tensorrt-stubs under mypy

    preflight(model_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, settings.typing))
    _parse(network, logger, model_path)
    config = builder.create_builder_config()
    if settings.typing == "weak":
        for flag in weak_flags(trt, precision):
            config.set_flag(flag)
    if settings.workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gib * (1 << 30)))
    if settings.optimization_level is not None:
        config.builder_optimization_level = settings.optimization_level
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    unknown = [n for n in names if n not in input_axes]
    if unknown:
        raise EngineBuildError(f"graph inputs {unknown} are not in the manifest's inputs {sorted(input_axes)}; "
                               "re-export the artifact")
    for profile in profiles:
        shape_profile = builder.create_optimization_profile()
        for name in names:
            low, opt, high = profile.shapes(input_axes[name])
            shape_profile.set_shape(name, trt.Dims(list(low)), trt.Dims(list(opt)), trt.Dims(list(high)))
        config.add_optimization_profile(shape_profile)
    _read_timing_cache(config, settings.timing_cache)
    log.info("building a TensorRT %s engine (%s typing) from %s with profiles %s", trt.__version__,
             settings.typing, model_path, ", ".join(str(p.bucket) for p in profiles))
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {model_path}; see TensorRT's log above "
                               "(out of memory: lower the largest profile or --workspace)")
    if settings.timing_cache is not None:
        write_atomic(settings.timing_cache.expanduser(), bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan))


"""OpenVINO peers: what a user gets from OpenVINO in a few lines, starting from the group's plain fp32 export.

- openvino-default: `ov.Core().compile_model(model, "CPU", {inference_num_threads: threads})`, OpenVINO's own
  defaults otherwise (bf16 inference precision where the CPU has AMX-BF16 / AVX512-BF16, f32 elsewhere).
- openvino-f32: the same with inference_precision f32.
- openvino-nncf-int8: `nncf.quantize` (model_type TRANSFORMER) of that model, calibrated on the text and
  sample count of encoderforge's int8-static pass, compiled with OpenVINO's defaults; the quantized model
  is cached (`ov.save_model`) in the bench workdir, like the ort-baseline int8 graph.

Model-only runs the compiled model's infer request on the point's feed; end to end runs encoderforge's own
pipeline over `CompiledSession`, so tokenization and post-processing are the same for every engine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.bench.engines import (
    Call,
    Engine,
    Feed,
    Group,
    Mode,
    Skip,
    run_pipeline,
    session_outputs,
    standard_export,
)
from encoderforge.bench.peers import require
from encoderforge.runtime.backends import TensorInfo
from encoderforge.runtime.backends.base import SessionBase
from encoderforge.runtime.backends.openvino import port_info
from encoderforge.sample_inputs import PointInputs

Variant = Literal["default", "f32", "nncf-int8"]
INSTALL = "pip install 'encoderforge[openvino]'"
_WHAT = {"default": "OpenVINO CPU, its default inference precision",
         "f32": "OpenVINO CPU, inference_precision f32",
         "nncf-int8": "nncf.quantize (TRANSFORMER) of the standard export, OpenVINO CPU defaults"}


class CompiledSession(SessionBase):
    """A compiled OpenVINO model as a runtime Session, for encoderforge's pipelines and the fidelity check."""

    backend = "openvino"

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._names = [p.get_any_name() for p in compiled.outputs]

    def inputs(self) -> list[TensorInfo]:
        return [port_info(p) for p in self.compiled.inputs]

    def outputs(self) -> list[TensorInfo]:
        return [port_info(p) for p in self.compiled.outputs]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer(feed)
        return {name: np.asarray(result[port]) for name, port in zip(self._names, self.compiled.outputs)}

    def close(self) -> None:
        self.request = None


def calibration_samples(group: Group, default: int) -> int:
    """The sample count an int8-static artifact of the group was calibrated with (its pass record), else
    `default` (that pass's own default)."""
    for artifact in group.artifacts:
        for record in artifact.manifest.passes:
            calibration = record.details.get("calibration") if record.name == "int8-static" else None
            if isinstance(calibration, dict) and isinstance(calibration.get("samples"), int):
                return int(calibration["samples"])
    return default


class OpenVinoEngine(Engine):
    def __init__(self, group: Group, *, variant: Variant, workdir: Path) -> None:
        super().__init__(f"openvino-{variant}", "peer", group, _WHAT[variant],
                         {"precision": "int8-static" if variant == "nncf-int8" else variant})
        self.variant: Variant = variant
        self.workdir = workdir
        self.session: CompiledSession | None = None
        self.pipeline: Any = None
        self._prepared: tuple[Artifact, Path] | None = None

    def prepare(self) -> None:
        require("openvino", INSTALL)
        if self.variant == "nncf-int8":
            require("nncf", INSTALL)
        plain = standard_export(self.group, self.workdir)
        path = plain.model_path
        if self.variant == "nncf-int8":
            from encoderforge.calibration.sources import DEFAULT_SAMPLES

            samples = calibration_samples(self.group, DEFAULT_SAMPLES)
            self.info["calibration"] = {"text": "the int8-static pass's built-in calibration text",
                                        "samples": samples, "ignored": "Gather (embedding lookups)"}
            path = self._quantized(plain, samples)
        self._prepared = (plain, path)

    def _quantized(self, plain: Artifact, samples: int) -> Path:
        """nncf's int8 model of the plain export, quantized once and cached in the workdir."""
        out = self.workdir / f"{self.group.key}-nncf-int8-{samples}-gather-float.xml"
        if out.is_file() and out.with_suffix(".bin").is_file():
            return out
        import nncf
        import openvino as ov

        from encoderforge.calibration.sources import calibration_feeds

        nncf.set_log_level(logging.ERROR)
        feeds = calibration_feeds(plain, None, samples=samples)  # the int8-static pass's built-in text
        model = ov.Core().read_model(str(plain.model_path))
        try:
            # Embedding Gathers stay float: with them quantized (TRANSFORMER's default) OpenVINO 2026.4's CPU
            # plugin fails to compile the model (constant_folding.cpp:71), so a user would have to do the same.
            quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(feeds),
                                      ignored_scope=nncf.IgnoredScope(types=["Gather"], validate=False))
        except Exception as exc:  # any nncf failure is this peer's skip reason
            raise Skip(f"nncf {nncf.__version__} cannot quantize {plain.path.name}: {_reason(exc)}") from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.with_name(f".{out.stem}-{os.getpid()}.xml")
        ov.save_model(quantized, str(staging), compress_to_fp16=False)  # keep nncf's model as it is
        os.replace(staging.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(staging, out)  # the .xml last: its presence means the pair is complete
        return out

    def load(self, threads: int) -> None:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        from encoderforge.runtime.pipelines import PIPELINES

        if self._prepared is None:
            self.prepare()
        assert self._prepared is not None
        plain, path = self._prepared
        core = ov.Core()
        config: dict[str, Any] = {props.inference_num_threads: threads}
        if self.variant == "f32":
            config[hints.inference_precision] = ov.Type.f32
        try:
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except RuntimeError as exc:
            what = "nncf's int8 model" if self.variant == "nncf-int8" else "the standard export"
            raise Skip(f"openvino {ov.__version__.split('-')[0]} cannot compile {what} ({path.name}): "
                       f"{_reason(exc)}") from exc
        self.session = CompiledSession(compiled)
        self.info.update(openvino=ov.get_version(), model_file=str(path), threads=threads,
                         inference_precision=compiled.get_property(hints.inference_precision).to_string(),
                         performance_mode=str(compiled.get_property(hints.performance_mode)),
                         streams=int(compiled.get_property(props.num_streams)))
        if self.variant == "nncf-int8":
            import nncf

            self.info["nncf"] = nncf.__version__
        self.pipeline = PIPELINES.get(plain.task)(self.group.artifacts[0], self.session)
        self.description += "; end-to-end inside encoderforge's pipeline (same tokenization and post-processing)"

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        if self.session is None:
            raise Skip("model not compiled")
        if mode == "model":
            request, feed = self.session.request, inputs.feed
            return lambda: request.infer(feed)
        if self.pipeline is None:
            raise Skip("pipeline not loaded")
        return run_pipeline(self.pipeline, inputs)

    def outputs(self, feed: Feed) -> dict[str, np.ndarray]:
        return session_outputs(self.session, feed)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = self.pipeline = None


def _reason(exc: BaseException) -> str:
    """One line of an exception: OpenVINO's errors open with "Exception from <file>" lines and end with the
    failed check, which is the line that says something."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith("Exception from")]
    return (telling or lines or [type(exc).__name__])[-1]


def openvino_peers(name: str, group: Group, *, workdir: Path) -> list[Engine]:
    """`--compare openvino`: default and f32 precision; `--compare openvino-nncf-int8`: nncf's int8."""
    variants: tuple[Variant, ...] = ("nncf-int8",) if name == "openvino-nncf-int8" else ("default", "f32")
    return [OpenVinoEngine(group, variant=v, workdir=workdir) for v in variants]

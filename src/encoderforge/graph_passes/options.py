"""Typed pass options: one frozen dataclass per pass that takes any, read from the optimize config's mapping.

`PassContext.options` is one mapping shared by the pipeline's passes (the optimize config's calibration
settings plus `OptimizeConfig.options`); each pass reads its own dataclass from it with `read(options)`,
taking the keys it declares. A key no pass declares is refused (`check_keys`), so a typo is an error, never
silently ignored. None means the pass's default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from typing_extensions import Self

from encoderforge.errors import UnsupportedError

O = TypeVar("O", bound="PassOptions")


@dataclass(frozen=True, kw_only=True)
class PassOptions:
    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def read(cls, options: Mapping[str, Any]) -> Self:
        """This pass's options from the shared mapping (other passes' keys are theirs); None keeps the default."""
        return cls(**{k: options[k] for k in cls.option_names() if options.get(k) is not None})


@dataclass(frozen=True, kw_only=True)
class CalibrationOptions(PassOptions):
    calibration_data: str | None = None  # text or JSONL file; None: the built-in held-out corpus
    calibration_samples: int | None = None  # None: the pass's own default


@dataclass(frozen=True, kw_only=True)
class OrtFusionOptions(PassOptions):
    embed_layer_norm: bool = True


@dataclass(frozen=True, kw_only=True)
class DynamicInt8Options(PassOptions):
    per_channel: bool = True
    reduce_range: bool | None = None  # None: on only for CPUs without VNNI


@dataclass(frozen=True, kw_only=True)
class Fp16Options(CalibrationOptions):
    fp16_threshold: float | None = None  # max |x| above which a node stays fp32; None: fp16.DEFAULT_THRESHOLD
    fp16_mask_value: float | None = None  # None: fp16.DEFAULT_MASK_VALUE
    fp16_auto_islands: bool = True
    fp16_keep_fp32_nodes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StaticInt8Options(CalibrationOptions):
    calibration_method: str = "minmax"
    max_accuracy_drop: float | None = None  # None: no sensitivity sweep
    smooth_quant_alpha: float | None = None
    calibration_percentile: float | None = None  # None: 99.999
    nodes_to_exclude: tuple[str, ...] = ()
    # None: the target's rule set decides (quantize_static.QuantRules)
    activation_type: str | None = None  # "int8" | "uint8"
    constant_weights_only: bool | None = None  # quantize only MatMuls with a constant weight
    dedicated_dequantize: bool | None = None  # one DequantizeLinear per consumer (ORT node units)
    reduce_range: bool | None = None  # 7-bit weights; None: cpu rules on CPUs without VNNI, never for GPU rules


# Which passes take options (the others take none), by pass name: known without importing the passes.
PASS_OPTIONS: dict[str, type[PassOptions]] = {
    "ort-fusions": OrtFusionOptions,
    "int8-dynamic": DynamicInt8Options,
    "fp16": Fp16Options,
    "int8-static": StaticInt8Options,
    "int8-static-nncf": CalibrationOptions,
}


def option_keys(passes: Iterable[str] | None = None) -> set[str]:
    """The option keys the named passes (all passes: None) declare."""
    names = PASS_OPTIONS if passes is None else [p for p in passes if p in PASS_OPTIONS]
    return {key for name in names for key in PASS_OPTIONS[name].option_names()}


def check_keys(options: Iterable[str], passes: Iterable[str] | None = None, *, where: str = "any graph pass") -> None:
    """Refuse keys the passes do not declare, in one line naming them and the valid ones."""
    valid = option_keys(passes)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UnsupportedError(f"pass option(s) {unknown} apply to no pass of {where}; valid: "
                               f"{sorted(valid) or 'none'}; fix the name or drop the option")

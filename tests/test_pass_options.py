"""Typed pass options: each pass reads its own frozen dataclass; a key no pass takes is refused in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from encoderforge.artifact import Artifact
from encoderforge.errors import UnsupportedError
from encoderforge.graph_passes import OptimizeConfig, optimize
from encoderforge.graph_passes.base import PassContext, PassResult
from encoderforge.graph_passes.options import (
    PASS_OPTIONS,
    DynamicInt8Options,
    Fp16Options,
    StaticInt8Options,
    option_keys,
)
from encoderforge.graph_passes.pipelines import PASS_MODULES, resolve


def test_options_read_their_own_keys_and_defaults() -> None:
    shared = {"per_channel": False, "calibration_samples": 8, "fp16_threshold": None}
    assert DynamicInt8Options.read(shared) == DynamicInt8Options(per_channel=False, reduce_range=None)
    assert Fp16Options.read(shared).calibration_samples == 8 and Fp16Options.read(shared).fp16_threshold is None
    assert StaticInt8Options.read({}).calibration_method == "minmax"
    with pytest.raises(AttributeError):
        DynamicInt8Options().per_channel = False  # type: ignore[misc]


def test_every_pass_with_options_is_a_registered_pass() -> None:
    assert set(PASS_OPTIONS) <= set(PASS_MODULES)
    assert {resolve(name).name for name in PASS_OPTIONS} == set(PASS_OPTIONS)


def test_unknown_key_is_refused(artifact: Callable[..., Artifact], tmp_path: Path) -> None:
    source = artifact("bert", "text-classification")
    with pytest.raises(UnsupportedError, match=r"pass option\(s\) \['per_chanel'\] apply to no pass of any graph"):
        PassContext(artifact=source, target="cpu", workdir=tmp_path, options={"per_chanel": True})
    with pytest.raises(UnsupportedError, match=r"\['per_channel'\] apply to no pass of --target cpu --precision fp32"):
        optimize(OptimizeConfig(artifact=source.path, output=tmp_path / "x", precision="fp32",
                                options={"per_channel": True}))
    assert not (tmp_path / "x").exists()
    assert "per_channel" in option_keys(["int8-dynamic"]) and option_keys(["fuse-attention"]) == set()


def test_pass_details_reach_the_manifest() -> None:
    result = PassResult("fp16", counts={"casts": 2}, details={"fp32_islands": {"n1": {"max_abs": 7e4, "tensor": "t"}}})
    record = result.record()
    assert record.name == "fp16" and record.details["fp32_islands"]["n1"]["tensor"] == "t"
    assert record.to_json()["details"] == {"fp32_islands": {"n1": {"max_abs": 7e4, "tensor": "t"}}}

"""Graphs whose int8 weights use the full 8-bit range are refused on CPUs whose int8 kernels saturate (x86 without
VNNI / AMX), by both CPU backends, with the fix in the message; 7-bit weights, VNNI CPUs and Q/DQ run in float load.
The CPU is faked (each kind, on every machine); the saturation itself was measured under an emulated AVX2 CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from encoderforge.artifact import Artifact
from encoderforge.cpu import CpuFeatures
from encoderforge.errors import UnsupportedError
from encoderforge.runtime.backends import saturation
from encoderforge.runtime.backends.saturation import saturation_refusal

AVX2 = CpuFeatures("fake AVX2 EPYC", frozenset({"avx2", "fma"}), "x86_64")
VNNI = CpuFeatures("fake VNNI EPYC", frozenset({"avx2", "avx512f", "avx512_vnni"}), "x86_64")
ARM = CpuFeatures("fake Neoverse", frozenset({"asimd"}), "aarch64")


def _cpu(monkeypatch: pytest.MonkeyPatch, cpu: CpuFeatures) -> None:
    monkeypatch.setattr(saturation, "current_cpu", lambda: cpu)


def _graph(path: Path, peak: int, *, integer_op: bool, external: bool = False) -> Path:
    """x (u8) times an int8 weight whose largest |w| is `peak`: MatMulInteger, or DequantizeLinear -> MatMul."""
    weight = np.zeros((4, 3), np.int8)
    weight[1, 2] = -peak
    w = numpy_helper.from_array(weight, "w")
    if integer_op:
        nodes = [helper.make_node("MatMulInteger", ["x", "w"], ["y"])]
        x = helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 4])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [2, 3])
        inits = [w]
    else:
        nodes = [helper.make_node("DequantizeLinear", ["w", "scale"], ["wf"]),
                 helper.make_node("MatMul", ["x", "wf"], ["y"])]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
        inits = [w, numpy_helper.from_array(np.array(0.1, np.float32), "scale")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=0)
    return path


@pytest.mark.parametrize("integer_op", [True, False], ids=["MatMulInteger", "QDQ"])
@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_full_range_weights_are_refused_where_int8_saturates(integer_op: bool, external: bool, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    full = _graph(tmp_path / "full.onnx", 127, integer_op=integer_op, external=external)
    seven = _graph(tmp_path / "seven.onnx", 64, integer_op=integer_op, external=external)
    _cpu(monkeypatch, AVX2)
    reason = saturation_refusal(full)
    assert reason is not None and "'w' reaches 127" in reason and "fake AVX2 EPYC" in reason, reason
    assert "re-run `encoderforge optimize` on this machine" in reason
    assert saturation_refusal(seven) is None
    # onnxruntime with optimizations off computes Q/DQ in float; MatMulInteger stays an integer kernel
    assert (saturation_refusal(full, integer_kernels=False) is None) is (not integer_op)
    for cpu in (VNNI, ARM):
        _cpu(monkeypatch, cpu)
        assert saturation_refusal(full) is None


@pytest.fixture(scope="module")
def int8_artifacts(artifact: Callable[..., Artifact], tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Artifact, Artifact]:
    """(8-bit weights, 7-bit weights) int8-static artifacts, built the same on every machine: the tensorrt rule
    set keeps 8 bits and is validated with Q/DQ in float; the cpu one is asked for 7 bits."""
    from encoderforge.graph_passes import OptimizeConfig, optimize

    art = artifact("bert", "text-classification")
    root = tmp_path_factory.mktemp("saturation")
    full = optimize(OptimizeConfig(artifact=art.path, output=root / "full", target="tensorrt",
                                   precision="int8-static", calibration_samples=8))
    seven = optimize(OptimizeConfig(artifact=art.path, output=root / "seven", precision="int8-static",
                                    calibration_samples=8, options={"reduce_range": True}))
    return full, seven


def _backends() -> list[str]:
    from encoderforge.runtime.backends import get_backend

    return ["onnxruntime-cpu"] + (["openvino"] if get_backend("openvino").available() is None else [])


@pytest.mark.parametrize("backend", _backends())
def test_backends_refuse_8_bit_weights_on_a_saturating_cpu(backend: str, int8_artifacts: tuple[Artifact, Artifact],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from encoderforge.runtime import load

    full, seven = int8_artifacts
    feed = ["a short sentence", "another one, a little longer than the first"]
    _cpu(monkeypatch, VNNI)
    want = load(full.path, backend=backend)(feed)
    _cpu(monkeypatch, AVX2)
    with pytest.raises(UnsupportedError, match=r"full 8-bit range .* has no VNNI, so its u8 x s8 products saturate"):
        load(full.path, backend=backend)
    assert len(load(seven.path, backend=backend)(feed)) == 2
    if backend == "onnxruntime-cpu":  # Q/DQ computed in float: exact, slow, allowed
        got = load(full.path, backend=backend, optimization_level="disable")(feed)
        assert [g["label"] for g in got] == [w["label"] for w in want]

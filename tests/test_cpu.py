"""CPU-driven choices, with each CPU kind we meet faked from its cpuinfo text (no test depends on the real CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from encoderforge import cpu as cpu_module
from encoderforge.artifact import Artifact
from encoderforge.bench.fingerprint import cpu_info
from encoderforge.cpu import CpuFeatures, read_cpu

_BASE = "fpu sse4_2 avx avx2 fma f16c"
CPUINFO = {  # (model name, flags): the kinds CI and users run on
    "zen3": ("AMD EPYC 7763 64-Core Processor", _BASE),
    "zen4": ("AMD EPYC 9R14", f"{_BASE} avx512f avx512bw avx512vl avx512_vnni avx512_bf16"),
    "sapphire-rapids": ("Intel(R) Xeon(R) Platinum 8488C",
                        f"{_BASE} avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 amx_tile amx_int8 amx_bf16"),
    "skylake": ("Intel(R) Xeon(R) Platinum 8175M", f"{_BASE} avx512f avx512bw avx512vl"),
}
# kind, int8 without saturation (no reduce_range), native bf16
EXPECTED = {"zen3": ("avx2", False, False), "zen4": ("avx512-vnni", True, True),
            "sapphire-rapids": ("amx", True, True), "skylake": ("avx512", False, False)}


def fake_cpu(name: str, machine: str = "x86_64") -> CpuFeatures:
    model, flags = CPUINFO[name]
    return read_cpu(text=f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n\nprocessor\t: 1\n",
                    machine=machine)


@pytest.mark.parametrize("name", sorted(CPUINFO))
def test_cpu_kinds(name: str) -> None:
    cpu = fake_cpu(name)
    assert (cpu.kind, cpu.int8_without_saturation, cpu.bf16) == EXPECTED[name]
    assert cpu.model == CPUINFO[name][0] and "avx2" in cpu.isa


def test_arm_and_unreadable_cpuinfo(tmp_path: Path) -> None:
    arm = read_cpu(text="processor\t: 0\nFeatures\t: fp asimd asimddp\nModel\t: Neoverse\n", machine="aarch64")
    assert arm.kind == "arm" and arm.int8_without_saturation and not arm.bf16 and arm.isa == ["asimd", "asimddp"]
    missing = read_cpu(tmp_path / "absent", machine="x86_64")
    assert missing.flags == frozenset() and missing.kind == "other" and not missing.int8_without_saturation


def test_fingerprint_records_kind_and_flags(tmp_path: Path) -> None:
    fake = tmp_path / "cpuinfo"
    model, flags = CPUINFO["sapphire-rapids"]
    fake.write_text(f"model name\t: {model}\nflags\t\t: {flags}\n")
    info = cpu_info(fake)
    assert info["model"] == model and info["kind"] == "amx"
    assert {"avx512_vnni", "amx_int8", "amx_bf16", "avx512_bf16"} <= set(info["isa"])


@pytest.mark.parametrize("name", sorted(CPUINFO))
def test_int8_dynamic_reduce_range_follows_each_cpu(name: str, artifact: Callable[..., Artifact], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """7-bit weights exactly where u8 x s8 products saturate in int16 (no VNNI / AMX)."""
    import onnx

    from encoderforge.graph_passes import quantize_dynamic
    from encoderforge.graph_passes.base import PassContext

    monkeypatch.setattr(quantize_dynamic, "current_cpu", lambda: fake_cpu(name))
    art = artifact("bert", "text-classification")
    _, result = quantize_dynamic.QuantizeDynamic().apply(onnx.load(str(art.model_path)),
                                                         PassContext(artifact=art, target="cpu", workdir=tmp_path))
    saturates = not EXPECTED[name][1]
    assert f"reduce_range={saturates}" in result.notes[0], result.notes


def test_current_cpu_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_module.current_cpu.cache_clear()
    calls: list[Path] = []
    real = cpu_module.read_cpu

    def counting(path: Path = cpu_module.CPUINFO, **kw: object) -> CpuFeatures:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(cpu_module, "read_cpu", counting)
    assert cpu_module.current_cpu() is cpu_module.current_cpu()
    assert len(calls) == 1
    cpu_module.current_cpu.cache_clear()

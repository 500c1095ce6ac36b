"""What this CPU can do, read once from /proc/cpuinfo: the one place kernel and precision choices look.

    cpu = current_cpu()
    cpu.int8_without_saturation   # VNNI / AMX / ARM dot products: full 8-bit weights are safe (no reduce_range)
    cpu.bf16                      # AMX-BF16 or AVX512-BF16: bf16 inference is native
    cpu.kind                      # "amx" | "avx512-vnni" | "avx512" | "avx2" | "arm" | "other", for reports

Tests fake a CPU with `read_cpu(text=...)` (a cpuinfo text) and by monkeypatching `current_cpu`.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The instruction-set extensions that decide which kernels onnxruntime, OpenVINO and torch pick.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve")
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot products without saturation
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # native bf16 matrix instructions
_ARM = ("arm64", "aarch64")


@dataclass(frozen=True)
class CpuFeatures:
    model: str
    flags: frozenset[str]
    machine: str  # platform.machine(): x86_64, aarch64, ...
    family: str | None = None  # x86 "cpu family" (AMD Zen 4 is 25, Zen 5 is 26), which the model name may not tell

    @property
    def arm(self) -> bool:
        return self.machine.lower() in _ARM

    @property
    def int8_without_saturation(self) -> bool:
        """int8 dot products accumulate in int32 (VNNI, AMX, ARM): no int16 saturation, so no reduce_range."""
        return self.arm or bool(self.flags & INT8_FLAGS)

    @property
    def bf16(self) -> bool:
        """Native bf16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
        return bool(self.flags & BF16_FLAGS)

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags or "amx_int8" in self.flags or "amx_bf16" in self.flags

    @property
    def isa(self) -> list[str]:
        """The decisive extensions present, in a fixed order (what benchmarks record)."""
        return [f for f in ISA_FLAGS if f in self.flags]

    @property
    def kind(self) -> str:
        if self.arm:
            return "arm"
        if self.amx:
            return "amx"
        if "avx512_vnni" in self.flags:
            return "avx512-vnni"
        if "avx512f" in self.flags:
            return "avx512"
        if "avx2" in self.flags:
            return "avx2"
        return "other"


def read_cpu(path: Path = CPUINFO, *, text: str | None = None, machine: str | None = None) -> CpuFeatures:
    """Parse a cpuinfo text (from `path`, or `text` when given); an unreadable file gives no flags."""
    machine = machine or platform.machine()
    if text is None:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    model, flags, family = "", frozenset[str](), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
        elif key == "cpu family" and family is None:
            family = value.strip()
    return CpuFeatures(model=model or platform.processor() or machine, flags=flags, machine=machine, family=family)


@lru_cache(maxsize=1)
def current_cpu() -> CpuFeatures:
    return read_cpu()

"""The environment fingerprint stored with every result: CPU, cores, GPU, library versions, artifact hashes."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from encoderforge.cpu import CPUINFO, read_cpu

_PACKAGES = ("encoderforge", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "tokenizers", "torch",
             "transformers", "sentence-transformers", "optimum-onnx", "optimum", "openvino", "nncf")


def cpu_info(path: Path = CPUINFO) -> dict[str, Any]:
    cpu = read_cpu(path)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 1
    return {"model": cpu.model, "family": cpu.family, "isa": cpu.isa, "kind": cpu.kind,
            "logical_cores": os.cpu_count(),
            "usable_cores": affinity, "machine": cpu.machine}


def machine_slug(cpu: dict[str, Any]) -> str:
    """The results folder of a CPU fingerprint: model, x86 family where recorded, ISA kind.

    e.g. amd-epyc-family-25-avx512-vnni (Zen 4) beside amd-epyc-family-26-avx512-vnni (Zen 5), whose virtualised
    model names are both plain "AMD EPYC"; fingerprints from before the family was recorded keep the shorter name.
    """
    family = f" family {cpu['family']}" if cpu.get("family") else ""
    name = f"{cpu['model']}{family} {cpu['kind']}".lower().replace("(r)", "").replace("(tm)", "")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def gpu_info() -> list[str]:
    """GPU names from nvidia-smi, or [] without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        return None
    return None


def fingerprint(artifacts: dict[str, dict[str, Any]], *, threads: int) -> dict[str, Any]:
    """Everything needed to judge whether two results are comparable. `artifacts`: label -> identity."""
    return {
        "cpu": cpu_info(), "gpu": gpu_info(), "memory_gb": memory_gb(), "os": platform.platform(),
        "threads": threads, "versions": versions(), "artifacts": artifacts,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }

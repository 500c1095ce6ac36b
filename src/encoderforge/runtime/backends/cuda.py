"""The little of CUDA the TensorRT path needs, through cuda-python's runtime bindings (no torch):
the device's name and compute capability, a stream, device buffers, and copies between host and device.

cuda-bindings >= 12.6 exposes `cuda.bindings.runtime`; older cuda-python exposes `cuda.cudart`. Every call
returns (error, value...); a non-success error raises `CudaError` naming the call and the CUDA error.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from encoderforge.errors import EncoderForgeError, UnsupportedError

INSTALL_HINT = "pip install 'encoderforge[tensorrt]' (cuda-python) on a machine with an NVIDIA driver and GPU"


class CudaError(EncoderForgeError):
    """A CUDA runtime call failed."""


@lru_cache(maxsize=1)
def cudart() -> Any:
    """The CUDA runtime bindings module; UnsupportedError naming the install when absent."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise UnsupportedError(f"cuda-python is not installed; {INSTALL_HINT}")


def check(result: Any, call: str) -> Any:
    """Unwrap a cuda-python (error, value...) tuple; raise CudaError on failure."""
    rt = cudart()
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != rt.cudaError_t.cudaSuccess:
        name = getattr(error, "name", str(error))
        raise CudaError(f"{call} failed with {name}; check the NVIDIA driver and that a GPU is visible "
                        "(nvidia-smi, CUDA_VISIBLE_DEVICES)")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the GPU's name and compute capability."""

    index: int
    name: str
    compute_capability: str  # "9.0"

    @property
    def sm(self) -> str:
        return "sm" + self.compute_capability.replace(".", "")


def device_info(index: int = 0) -> DeviceInfo:
    rt = cudart()
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if index >= int(count):
        raise UnsupportedError(f"CUDA device {index} does not exist; this machine has {count} GPU(s)")
    props = check(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    raw = props.name
    name = raw.split(b"\0", 1)[0].decode() if isinstance(raw, bytes) else str(raw)
    return DeviceInfo(index, name.strip(), f"{props.major}.{props.minor}")


def cuda_unavailable_reason(index: int = 0) -> str | None:
    """None when a CUDA device is usable through cuda-python, else why not."""
    try:
        device_info(index)
    except EncoderForgeError as exc:
        return str(exc)
    return None


class Stream:
    def __init__(self) -> None:
        self.handle: Any = check(cudart().cudaStreamCreate(), "cudaStreamCreate")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(cudart().cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None


class DeviceBuffer:
    """Device memory that grows on demand and is reused across calls."""

    def __init__(self) -> None:
        self.ptr = 0
        self.capacity = 0

    def reserve(self, nbytes: int) -> int:
        if nbytes > self.capacity:
            self.free()
            self.ptr = int(check(cudart().cudaMalloc(max(nbytes, 256)), "cudaMalloc"))
            self.capacity = max(nbytes, 256)
        return self.ptr

    def upload(self, array: np.ndarray, stream: Stream) -> int:
        array = np.ascontiguousarray(array)
        ptr = self.reserve(array.nbytes)
        rt = cudart()
        check(rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                 stream.handle), "cudaMemcpyAsync(host to device)")
        return ptr

    def download(self, out: np.ndarray, stream: Stream) -> np.ndarray:
        rt = cudart()
        check(rt.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 stream.handle), "cudaMemcpyAsync(device to host)")
        return out

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr), "cudaFree")
            self.ptr, self.capacity = 0, 0

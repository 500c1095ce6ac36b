"""Precision and Target: str enums, equal (and hashed) as their values."""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    """What an artifact's graph computes in. `numeric` is the class an engine builder cares about."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__  # equal to its value as a str, so hashed like it (dict keys, sets)

    @property
    def is_int8(self) -> bool:
        return self in (Precision.INT8_DYNAMIC, Precision.INT8_STATIC)

    @property
    def numeric(self) -> str:
        """fp32 | fp16 | int8: the element type class (TensorRT builder flags, validation floors)."""
        return "int8" if self.is_int8 else self.value


# What --precision accepts: auto measures the CPU candidates and records one of the others (graph_passes/auto.py).
PRECISION_CHOICES = ("auto", *(p.value for p in Precision))


class Target(str, Enum):
    """Where an optimized graph is meant to run."""

    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__  # equal to its value as a str, so hashed like it (dict keys, sets)

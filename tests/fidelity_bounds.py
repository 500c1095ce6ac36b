"""Fidelity bounds for quantized graphs of tiny random-weight models, per output kind, that hold on every CPU.

A tiny random head's logits are near-tied and small, so a per-row cosine or argmax over 2-9 of them swings with
the last bit of a kernel's rounding (AMX and VNNI kernels round differently). What holds everywhere, and still
fails on a real regression (see tests/test_fidelity_bounds.py, which breaks graphs on purpose):

- every output: `pooled_sqnr_db` (signal to quantization noise over every element of all feeds at once) and
  `relative_max_error` (worst error against the output's largest magnitude);
- long vectors only (hidden states, vocabulary logits: last axis >= LONG_VECTOR): the per-row min cosine too.
"""

from __future__ import annotations

from dataclasses import dataclass

from encoderforge.cpu import current_cpu
from encoderforge.fidelity import LONG_VECTOR, FidelityReport


@dataclass(frozen=True)
class Bound:
    min_sqnr_db: float
    max_relative_error: float
    min_long_cosine: float

    def violations(self, report: FidelityReport) -> list[str]:
        found = [] if report.finite else ["non-finite values in the candidate's outputs"]
        for name, out in report.outputs.items():
            if out.pooled_sqnr_db < self.min_sqnr_db:
                found.append(f"{name}: pooled sqnr {out.pooled_sqnr_db:.1f} dB < {self.min_sqnr_db} dB")
            if out.relative_max_error > self.max_relative_error:
                found.append(f"{name}: relative max error {out.relative_max_error:.4f} > {self.max_relative_error}")
            if out.vector_length >= LONG_VECTOR and out.min_cosine < self.min_long_cosine:
                found.append(f"{name}: min cosine {out.min_cosine:.5f} < {self.min_long_cosine} "
                             f"over vectors of {out.vector_length}")
        return found


# Measured on AMD EPYC Zen4 (AVX-512 VNNI) for every family x head: pooled sqnr 39-49 dB, relative max error <= 0.01,
# long-vector cosine >= 0.9998; a dropped scale or a misplaced Q/DQ pair lands far outside (test_fidelity_bounds).
INT8 = Bound(min_sqnr_db=28.0, max_relative_error=0.08, min_long_cosine=0.995)

# On a CPU without VNNI the CPU rule set stores weights in 7 bits (half the steps: 6 dB more noise, twice the error).
# Measured with that rule set on the responsive short heads (test_fidelity_bounds): 26.7-31.7 dB, <= 0.09; the
# graphs broken on purpose stay at <= 8.3 dB, >= 0.57.
INT8_SEVEN_BIT = Bound(min_sqnr_db=22.0, max_relative_error=0.16, min_long_cosine=0.995)


def cpu_int8_bound() -> Bound:
    """The bound for a graph quantized by the CPU rule set on this machine."""
    return INT8 if current_cpu().int8_without_saturation else INT8_SEVEN_BIT

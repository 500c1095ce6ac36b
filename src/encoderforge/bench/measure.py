"""The measurement core: warm-up, timed iterations, percentiles, throughput and the process's own memory.

Wall-clock per call with `time.perf_counter_ns`; nothing else runs inside the timed region (inputs are prepared
before, outputs are only kept alive). Memory is the process's resident set from /proc/self/status: `VmHWM`
(peak) is reset through /proc/self/clear_refs before each engine so every engine's peak is its own; where that
file cannot be written (not Linux, restricted container) the peak falls back to getrusage's ru_maxrss, which
only ever grows, and the result says so.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Statistics of `iters` timed calls of one (engine, mode, batch size, sequence length) point."""

    iters: int
    warmup: int
    first_call_ms: float  # the first call at this shape, before warm-up
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    seq_per_s: float  # batch_size / p50
    tokens_per_s: float  # tokens per call / p50
    per_token_us: float  # p50 / tokens per call

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def summarize(samples_ns: list[int], *, batch_size: int, tokens: float, warmup: int, first_call_ns: int) -> Timing:
    """`tokens`: tokens per call (the whole batch)."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return Timing(
        iters=len(samples_ns), warmup=warmup, first_call_ms=first_call_ns / 1e6, mean_ms=float(ms.mean()),
        std_ms=float(ms.std()), min_ms=float(ms.min()), p50_ms=p50, p90_ms=p90, p99_ms=p99,
        seq_per_s=batch_size / (p50 / 1e3), tokens_per_s=tokens / (p50 / 1e3), per_token_us=p50 * 1e3 / tokens,
    )


class PointTimer:
    """One engine's calls at one point, timed in rounds so that the engines of a point can interleave: a burst
    of load from outside then spreads over every engine instead of spoiling one engine's whole point.

    Construction makes the first call and the warm-up (a quarter of `max_seconds` at most, at least one call);
    each `sample` round makes one untimed call where another engine ran in between (caches and allocator arenas
    are then cold), then timed calls until `iters` or its `max_seconds` (at least `min_iters`)."""

    def __init__(self, call: Callable[[], object], *, warmup: int, max_seconds: float | None) -> None:
        self.call = call
        clock = time.perf_counter_ns
        start = clock()
        call()
        self.first_ns = clock() - start
        warm_start, self.warmed = clock(), 0
        for _ in range(warmup):
            call()
            self.warmed += 1
            if max_seconds is not None and clock() - warm_start > max_seconds * 1e9 / 4:
                break
        self.samples: list[int] = []
        self.rounds = 0

    def sample(self, *, iters: int, max_seconds: float | None, min_iters: int = 5, rewarm: bool = False) -> None:
        clock = time.perf_counter_ns
        if rewarm:
            self.call()
        deadline = None if max_seconds is None else clock() + int(max_seconds * 1e9)
        for taken in range(1, iters + 1):
            start = clock()
            result = self.call()
            self.samples.append(clock() - start)
            del result
            if deadline is not None and taken >= min_iters and clock() > deadline:
                break
        self.rounds += 1

    def timing(self, *, batch_size: int, tokens: float) -> Timing:
        return summarize(self.samples, batch_size=batch_size, tokens=tokens, warmup=self.warmed,
                         first_call_ns=self.first_ns)


def time_calls(
    call: Callable[[], object], *, warmup: int, iters: int, batch_size: int, tokens: float,
    max_seconds: float | None = None, min_iters: int = 5,
) -> Timing:
    """First call, `warmup` untimed calls, then `iters` timed calls, in one go. With `max_seconds`, warm-up
    stops after a quarter of it (at least one call) and timing after all of it (at least `min_iters` calls), so
    a slow point cannot stall a sweep; the result records how many calls ran."""
    timer = PointTimer(call, warmup=warmup, max_seconds=max_seconds)
    timer.sample(iters=iters, max_seconds=max_seconds, min_iters=min_iters)
    return timer.timing(batch_size=batch_size, tokens=tokens)


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    kb = _status_kb("VmRSS")
    if kb is None:
        kb = _maxrss_kb()
    return kb / 1024


def _maxrss_kb() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value  # bytes on macOS, KiB on Linux


def trim_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakMemory:
    """Peak RSS of the process between `reset()` and `peak_mb()`; `exact` is False when it cannot be reset."""

    def __init__(self) -> None:
        self.exact = False

    def reset(self) -> float:
        """Reset the high-water mark (where possible); return the current RSS in MiB as the baseline.
        Memory that earlier engines freed is first handed back to the OS (glibc malloc_trim), else the next
        engine would reuse it without its RSS growing."""
        trim_heap()
        try:
            _CLEAR_REFS.write_text("5")
            self.exact = _status_kb("VmHWM") is not None
        except OSError:
            self.exact = False
        return rss_mb()

    def peak_mb(self) -> float:
        kb = _status_kb("VmHWM") if self.exact else None
        return (kb if kb is not None else _maxrss_kb()) / 1024

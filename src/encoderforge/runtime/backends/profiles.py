"""Optimization profiles as a loaded engine has them, and the choice of a profile for a request shape.

A request is served by the smallest profile whose maxima cover it; when that profile starts above the
request's length (a short request in a large batch) the request is padded up to the profile's minimum --
padding positions carry attention_mask 0, so the real tokens' outputs do not change. How profiles are made
from length buckets at build time is `encoderforge.engines.profiles`.

Pure Python: no TensorRT, testable everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from encoderforge.errors import InputError, UnsupportedError
from encoderforge.tasks import BATCH, SEQUENCE

_SPEC = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Bucket:
    """One profile's maxima: `batch` sequences of at most `sequence` tokens."""

    batch: int
    sequence: int

    def __str__(self) -> str:
        return f"{self.batch}x{self.sequence}"


@dataclass(frozen=True)
class AxisRange:
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise UnsupportedError(f"axis range {self.min}/{self.opt}/{self.max} must satisfy 1 <= min <= opt <= max")

    def contains(self, n: int) -> bool:
        return self.min <= n <= self.max


@dataclass(frozen=True)
class Profile:
    """An optimization profile: a range for batch and sequence, and one per other dynamic axis."""

    bucket: Bucket
    batch: AxisRange
    sequence: AxisRange
    other: AxisRange

    def axis(self, name: str | int | None) -> AxisRange:
        return self.batch if name == BATCH else self.sequence if name == SEQUENCE else self.other

    def shapes(self, axes: Sequence[str | int | None]) -> tuple[Shape, Shape, Shape]:
        """(min, opt, max) shapes of an input with these axes (an int is a fixed dimension)."""
        dims = [(a, a, a) if isinstance(a, int) else (r.min, r.opt, r.max) for a, r in
                ((a, self.axis(a)) for a in axes)]
        return tuple(d[0] for d in dims), tuple(d[1] for d in dims), tuple(d[2] for d in dims)

    def __str__(self) -> str:
        return (f"{self.bucket} (batch {self.batch.min}..{self.batch.max}, "
                f"sequence {self.sequence.min}..{self.sequence.max})")


def parse_buckets(spec: str) -> list[Bucket]:
    """'1x16,8x128,32x384' -> buckets, sorted by sequence then batch; bad or duplicate entries are errors."""
    buckets = []
    for item in (part for part in spec.split(",") if part.strip()):
        match = _SPEC.match(item)
        if match is None:
            raise InputError(f"profile {item.strip()!r} is not BATCHxSEQUENCE; write e.g. --profiles 1x16,8x128,32x384")
        batch, sequence = int(match[1]), int(match[2])
        if batch < 1 or sequence < 1:
            raise InputError(f"profile {item.strip()!r} has a zero dimension; batch and sequence must be >= 1")
        buckets.append(Bucket(batch, sequence))
    if not buckets:
        raise InputError(f"no profiles in {spec!r}; write e.g. --profiles 1x16,8x128,32x384")
    if len(set(buckets)) != len(buckets):
        raise InputError(f"profiles {spec!r} repeat a bucket; list each BATCHxSEQUENCE once")
    return sorted(buckets, key=lambda b: (b.sequence, b.batch))


@dataclass(frozen=True)
class Choice:
    """The profile for a request, and the shape to run it at (the request padded up to the profile's minimum)."""

    index: int
    batch: int
    sequence: int


def select_profile(profiles: Sequence[Profile], batch: int, sequence: int) -> Choice:
    """The profile to run a (batch, sequence) request with: among the profiles whose maxima cover it, the one
    that needs the least padding, then the smallest. No profile covering it is an error listing the profiles;
    the backend splits batches larger than every profile before asking."""
    if batch < 1 or sequence < 1:
        raise InputError(f"request shape {batch}x{sequence} is empty; pass at least one token in one sequence")
    best: tuple[tuple[int, int, int], Choice] | None = None
    for index, profile in enumerate(profiles):
        if batch > profile.batch.max or sequence > profile.sequence.max:
            continue
        run_batch, run_seq = max(batch, profile.batch.min), max(sequence, profile.sequence.min)
        key = (run_batch * run_seq, profile.batch.max * profile.sequence.max, index)
        if best is None or key < best[0]:
            best = (key, Choice(index, run_batch, run_seq))
    if best is None:
        raise no_profile(profiles, batch, sequence)
    return best[1]


def no_profile(profiles: Sequence[Profile], batch: int, sequence: int) -> UnsupportedError:
    listed = ",".join(str(p.bucket) for p in profiles)
    return UnsupportedError(
        f"request {batch}x{sequence} (batch x sequence) fits no optimization profile ({listed}); "
        f"rebuild the engine with a larger bucket, e.g. --profiles {listed},{batch}x{sequence}"
    )


def max_batch_for(profiles: Sequence[Profile], sequence: int) -> int:
    """The largest batch any profile accepts at this sequence length (0 when the length fits none)."""
    return max((p.batch.max for p in profiles if sequence <= p.sequence.max), default=0)


def profiles_from_manifest(entries: Sequence[Mapping[str, object]]) -> list[Profile]:
    def rng(value: object) -> AxisRange:
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise InputError(f"profile range {value!r} is not [min, opt, max]; rebuild the engine")
        return AxisRange(int(value[0]), int(value[1]), int(value[2]))

    result = []
    for entry in entries:
        bucket = parse_buckets(str(entry["bucket"]))[0]
        result.append(Profile(bucket, rng(entry["batch"]), rng(entry["sequence"]), rng(entry["other"])))
    return result

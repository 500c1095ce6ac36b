"""Optimization profiles from length buckets, and the choice of a profile (or bucket) for a request shape.

`--profiles 1x16,8x128,32x384` reads "max batch x max sequence" per profile. For each profile

    sequence: min = the next smaller sequence bucket + 1 (or 1), opt = max = the bucket
    batch:    min = 1,                                          opt = max = the bucket

so the sequence ranges tile 1..384 without overlap (TensorRT tunes each range for its own lengths) and no
profile is min=opt=max. A request is served by the smallest profile whose maxima cover it; when that profile
starts above the request's length (a short request in a large batch) the request is padded up to the
profile's minimum — padding positions carry attention_mask 0, so the real tokens' outputs do not change.
Axes other than batch and sequence (num_choices for multiple choice) get the range `other_axis`.

Pure Python: no TensorRT, testable everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from encoderforge.errors import InputError
from encoderforge.runtime.backends.profiles import AxisRange, Bucket, Profile, parse_buckets

__all__ = ["DEFAULT_OTHER_AXIS", "DEFAULT_PROFILES", "AxisRange", "Bucket", "Profile", "default_buckets",
           "make_profiles", "parse_buckets", "profiles_as_manifest"]

DEFAULT_PROFILES = "1x128,8x128,32x384"
DEFAULT_OTHER_AXIS = AxisRange(1, 4, 8)


def default_buckets(max_length: int) -> list[Bucket]:
    """DEFAULT_PROFILES with every sequence capped at the model's max length (duplicates dropped)."""
    capped = {Bucket(b.batch, min(b.sequence, max_length)) for b in parse_buckets(DEFAULT_PROFILES)}
    return sorted(capped, key=lambda b: (b.sequence, b.batch))


def make_profiles(
    buckets: Sequence[Bucket], *, max_length: int | None = None, other_axis: AxisRange = DEFAULT_OTHER_AXIS
) -> list[Profile]:
    """Profiles for `buckets` (see the module docstring). A bucket longer than the model's max length is an
    error naming the limit."""
    ordered = sorted(buckets, key=lambda b: (b.sequence, b.batch))
    if max_length is not None:
        too_long = [b for b in ordered if b.sequence > max_length]
        if too_long:
            raise InputError(
                f"profile {too_long[0]} is longer than the model's max length {max_length}; "
                f"use a sequence bucket <= {max_length}"
            )
    profiles = []
    for bucket in ordered:
        shorter = [b.sequence for b in ordered if b.sequence < bucket.sequence]
        seq_min = max(shorter) + 1 if shorter else 1
        profiles.append(Profile(bucket, AxisRange(1, bucket.batch, bucket.batch),
                                AxisRange(seq_min, bucket.sequence, bucket.sequence), other_axis))
    return profiles


def profiles_as_manifest(profiles: Sequence[Profile]) -> list[dict[str, object]]:
    return [{"bucket": str(p.bucket), "batch": [p.batch.min, p.batch.opt, p.batch.max],
             "sequence": [p.sequence.min, p.sequence.opt, p.sequence.max],
             "other": [p.other.min, p.other.opt, p.other.max]} for p in profiles]

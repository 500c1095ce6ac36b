"""Validation of an engine against the ONNX graph it was built from, on real text, in every profile.

For each optimization profile two feeds of held-out text (fidelity.py's corpus) are tokenized with the
artifact's own tokenizer: one at the profile's largest shape (batch x longest sequence, rows of unequal
length so padding is exercised) and one short single sequence near the profile's lower end. The graph runs
on onnxruntime CPU, the engine on the GPU; fidelity.compare_outputs reports max |diff|, argmax agreement,
min cosine and SQNR per output. The report goes into the engine's manifest entry; an engine below the
cosine floor (or with inf/NaN) fails the build.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.corpus import CHOICES, sentence_corpus
from encoderforge.engines.profiles import Profile
from encoderforge.errors import ValidationError
from encoderforge.fidelity import Feed, compare_outputs, run_model
from encoderforge.tasks import task_head
from encoderforge.tokenization import ArtifactTokenizer, TextInput

# Cosine floors by graph precision: the engine must compute what the graph computes (TF32 / fp16 kernels
# and int8 re-fusions move results a little, never the direction of an output vector).
MIN_COSINE = {"fp32": 0.999, "fp16": 0.995, "int8": 0.98}


def _items(kind: str, texts: Sequence[str], rows: int, long: bool) -> list[Any]:
    """`rows` texts (or question/context pairs); with `long`, every other one runs past any max length."""
    n = len(texts)
    items: list[Any] = []
    for i in range(rows):
        text = " ".join(texts[(i + j) % n] for j in range(40)) if long and i % 2 == 0 else texts[i % n]
        items.append((texts[(i + 1) % n].split(",")[0].rstrip(".?!") + "?", text) if kind == "pairs" else text)
    return items


def profile_feeds(artifact: Artifact, profile: Profile) -> list[tuple[str, Feed]]:
    """Two feeds that fall inside `profile`: its largest shape, and a short one near its lower end."""
    head = task_head(artifact.task)
    kind = "mc" if head.multiple_choice else "pairs" if head.uses_pairs else "single"
    tokenizer = ArtifactTokenizer.from_artifact(artifact)
    texts = sentence_corpus(64)
    short = min(max(profile.sequence.min, 16), profile.sequence.max)
    feeds = []
    for name, rows, length, long in (("max", profile.batch.max, profile.sequence.max, True),
                                     ("short", 1, short, False)):
        items = _items(kind, texts, rows, long)
        if kind == "mc":
            choices = profile.other.opt
            pairs: list[TextInput] = [(item, CHOICES[c % len(CHOICES)]) for item in items for c in range(choices)]
            encoded = tokenizer.encode(pairs, max_length=length)
            flat = tokenizer.to_feed(encoded, pad_to=max(length, profile.sequence.min))
            feed = {k: v.reshape(rows, choices, v.shape[-1]) for k, v in flat.items()}
        else:
            encoded = tokenizer.encode(items, max_length=length)
            feed = tokenizer.to_feed(encoded, pad_to=max(length, profile.sequence.min))
        feeds.append((f"{profile.bucket}/{name}", feed))
    return feeds


def validate_engine(artifact: Artifact, session: Any, profiles: Sequence[Profile], *, precision: str,
                    min_cosine: float | None = None) -> dict[str, Any]:
    """Compare `session` (the engine) with the artifact's graph on onnxruntime CPU; raise ValidationError
    below the cosine floor, else return the report for the manifest."""
    floor = MIN_COSINE.get(precision, MIN_COSINE["int8"]) if min_cosine is None else min_cosine
    cases = [case for profile in profiles for case in profile_feeds(artifact, profile)]
    feeds = [feed for _, feed in cases]
    reference = run_model(artifact.model_path, feeds)
    candidate = [{k: np.asarray(v) for k, v in session.run(feed).items()} for feed in feeds]
    report = compare_outputs(reference, candidate, feeds)
    result = {
        "reference": "onnxruntime-cpu on the artifact's graph",
        "candidate": session.backend,
        "cases": [{"name": name, "input_shape": list(next(iter(feed.values())).shape)} for name, feed in cases],
        "min_cosine_required": floor,
        **report.as_manifest(),
        "passed": report.finite and report.min_cosine >= floor,
    }
    if not result["passed"]:
        raise ValidationError(
            f"the engine disagrees with the ONNX graph: min cosine {report.min_cosine:.6f} (required {floor}), "
            f"max |diff| {report.max_abs_diff:.3g}, finite {report.finite}; check the graph's precision or "
            "rebuild with typing='strong'"
        )
    return result

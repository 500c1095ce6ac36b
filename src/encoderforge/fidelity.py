"""Fidelity of an optimized graph against its fp32 reference, on held-out real text. Torch-free.

`fidelity_feeds(artifact)` tokenizes held-out text with the artifact's own tokenizer: lines of the synthetic
corpus and combinations of them (never the exporter's validation sentences), as text pairs for
question-answering and multiple-choice heads (multiple-choice feeds have shape (batch, num_choices, seq)).

`compare_models(reference, candidate, feeds)` runs both graphs on onnxruntime CPU and reports, per output:

    max_abs_diff       largest |reference - candidate| over every element of every feed
    argmax_agreement   share of last-axis vectors whose argmax agrees (None when the last axis has size 1)
    min_cosine         worst cosine similarity between reference and candidate last-axis vectors
    median_sqnr_db     median over feeds of 10 log10(sum ref^2 / sum (ref - cand)^2)
    pooled_sqnr_db     10 log10(sum ref^2 / sum (ref - cand)^2) over every element of all feeds at once
    relative_max_error max |ref - cand| / max |ref| over all feeds

Which metric means something depends on the output: a cosine or an argmax over the 2-3 logits of a
classification or multiple-choice row is noise on near-tied random logits, while `pooled_sqnr_db` and
`relative_max_error` pool every element and hold for any output shape; cosine is meaningful on long
vectors (hidden states, vocabulary logits, embeddings).

Per-token outputs (batch, seq, ...) are compared on real tokens only: rows where the attention mask is 0
(padding) carry no meaning and are left out.

The accuracy-drop metric used by budgets (``--max-accuracy-drop``) is ``1 - agreement`` over the task
outputs, where an output's agreement is its min cosine when its vectors are long (last axis >= 16: hidden
states, vocabulary logits, embeddings) and otherwise ``1 - sum (ref - cand)^2 / (2 sum ref^2)`` pooled over
every row, from `pooled_sqnr_db` (a per-row cosine over a few logits is noise; to first order the two agree,
and unlike a cosine the pooled form also sees a wrong output scale): 0 means fp32's outputs exactly. For embedding artifacts (a
sentence-transformers pooling in the manifest) the task output is the pooled ``sentence_embedding`` (mean /
cls / max over real tokens, as the runtime pools), reported next to the raw per-token hidden states; for
every other head it is the graph's outputs (logits). It is meaningful on random-weight models too, where
near-tied logits make argmax agreement say little.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from encoderforge.artifact import Artifact
from encoderforge.corpus import CHOICES, held_out_texts
from encoderforge.errors import InputError
from encoderforge.onnx_files import PROTOBUF_MAX
from encoderforge.runtime.pooling import pool
from encoderforge.tokenization import ArtifactTokenizer, TextInput

Feed = dict[str, np.ndarray]
LONG_VECTOR = 16  # last-axis size from which a per-row cosine means something

def _task_kind(artifact: Artifact) -> str:
    from encoderforge.tasks import task_head

    head = task_head(artifact.task)
    if head.multiple_choice:
        return "mc"
    return "pairs" if head.uses_pairs else "single"


def _default_texts(kind: str, count: int, batch: int) -> list[list[Any]]:
    """`count` batches of held-out text: single texts, (question, context) pairs, or (prompt, choices)."""
    lines = held_out_texts()
    n = len(lines)
    batches: list[list[Any]] = []
    for i in range(count):
        items: list[Any] = []
        for j in range(batch):
            a, b = lines[(3 * i + j) % n], lines[(7 * i + 5 * j + 1) % n]
            if kind == "single":
                # alternate one line and two joined lines: unequal lengths exercise padding
                items.append(a if (i + j) % 2 == 0 else f"{a} {b}")
            elif kind == "pairs":
                question = a.split(",")[0].rstrip(".?!") + "?"
                items.append((question, f"{b} {lines[(11 * i + j + 2) % n]}"))
            else:
                items.append((a, list(CHOICES)))
        batches.append(items)
    return batches


def _encode_batch(tokenizer: ArtifactTokenizer, kind: str, items: Sequence[Any]) -> Feed:
    if kind == "mc":
        num_choices = len(items[0][1])
        if any(len(choices) != num_choices for _, choices in items):
            raise InputError("multiple-choice items must all have the same number of choices")
        pairs = [(prompt, choice) for prompt, choices in items for choice in choices]
        feed = tokenizer.to_feed(tokenizer.encode(pairs))
        return {k: v.reshape(len(items), num_choices, v.shape[-1]) for k, v in feed.items()}
    texts: list[TextInput] = [tuple(item) if isinstance(item, (list, tuple)) else item for item in items]
    if kind == "pairs" and not all(isinstance(t, tuple) for t in texts):
        raise InputError("question-answering feeds need (question, context) pairs")
    return tokenizer.to_feed(tokenizer.encode(texts, truncation=True))


def fidelity_feeds(
    artifact: Artifact,
    *,
    count: int = 20,
    texts: Iterable[Any] | None = None,
    batch_size: int = 2,
) -> list[Feed]:
    """Tokenized feeds of held-out real text for `artifact`'s graph inputs.

    `texts`: optional items instead of the held-out corpus: strings, (first, second) pairs for QA, or
    (prompt, [choices...]) for multiple choice; they are batched `batch_size` at a time (at most `count`
    batches). Without `texts`, `count` batches of `batch_size` are built from the corpus."""
    tokenizer = ArtifactTokenizer.from_artifact(artifact)
    kind = _task_kind(artifact)
    if texts is None:
        batches = _default_texts(kind, count, batch_size)
    else:
        items = list(texts)
        if not items:
            raise InputError("no texts given for fidelity feeds")
        batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)][:count]
    return [_encode_batch(tokenizer, kind, batch) for batch in batches]


# ---------------------------------------------------------------------------------------------------------
# Running and comparing


def make_session(model: onnx.ModelProto | Path | str, *, optimization: str = "all") -> Any:
    """An onnxruntime CPU session for a ModelProto (serialized in memory, or via a temp file above 2 GB)
    or a path."""
    import onnxruntime as ort

    from encoderforge.runtime.backends.onnxruntime import OrtOptions

    so = OrtOptions(optimization_level=optimization).session_options()  # type: ignore[arg-type]
    providers = ["CPUExecutionProvider"]
    if isinstance(model, onnx.ModelProto):
        if model.ByteSize() < PROTOBUF_MAX:
            return ort.InferenceSession(model.SerializeToString(), so, providers=providers)
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="encoderforge-fidelity-"))
        onnx.save_model(model, str(tmp / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
        model = tmp / "model.onnx"
    return ort.InferenceSession(str(model), so, providers=providers)


def run_model(
    model: onnx.ModelProto | Path | str | Any, feeds: Sequence[Feed], *, output_names: Sequence[str] | None = None
) -> list[dict[str, np.ndarray]]:
    """Outputs (as float64 for floating outputs) of `model` (or an existing session) on every feed."""
    session: Any = model if hasattr(model, "run") and hasattr(model, "get_inputs") else make_session(model)
    inputs = {i.name for i in session.get_inputs()}
    names = list(output_names) if output_names is not None else [o.name for o in session.get_outputs()]
    results = []
    for feed in feeds:
        values = session.run(names, {k: v for k, v in feed.items() if k in inputs})
        results.append({n: np.asarray(v) for n, v in zip(names, values)})
    return results


@dataclass(frozen=True)
class OutputFidelity:
    max_abs_diff: float
    argmax_agreement: float | None
    min_cosine: float
    median_sqnr_db: float
    nonfinite: int = 0  # count of inf/nan in the candidate's output
    pooled_sqnr_db: float = math.inf  # SQNR over every element of all feeds at once
    relative_max_error: float = 0.0  # max abs diff / max abs of the reference output
    vector_length: int = 0  # size of the last axis (the vectors cosine and argmax are taken over)

    @property
    def agreement(self) -> float:
        """The per-row min cosine on long vectors, 1 - noise / (2 signal) pooled on short ones (module doc)."""
        if self.vector_length >= LONG_VECTOR:
            return self.min_cosine
        if self.pooled_sqnr_db == -math.inf:
            return -1.0
        return max(-1.0, 1.0 - 0.5 * math.pow(10.0, -self.pooled_sqnr_db / 10.0))

    def as_manifest(self) -> dict[str, Any]:
        return {"max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement,
                "min_cosine": self.min_cosine, "median_sqnr_db": self.median_sqnr_db, "nonfinite": self.nonfinite,
                "pooled_sqnr_db": _finite_or_none(self.pooled_sqnr_db), "relative_max_error": self.relative_max_error}


@dataclass(frozen=True)
class FidelityReport:
    outputs: Mapping[str, OutputFidelity]
    samples: int  # number of feeds compared
    rows: int = 0  # number of compared last-axis vectors, summed over outputs
    notes: tuple[str, ...] = field(default=())
    task_outputs: tuple[str, ...] = ()  # outputs the accuracy drop is measured on (empty: all)

    @property
    def task_agreement(self) -> float:
        names = [n for n in self.task_outputs if n in self.outputs] or list(self.outputs)
        return min((self.outputs[n].agreement for n in names), default=1.0)

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs.values()), default=0.0)

    @property
    def min_cosine(self) -> float:
        return min((o.min_cosine for o in self.outputs.values()), default=1.0)

    @property
    def median_sqnr_db(self) -> float:
        return min((o.median_sqnr_db for o in self.outputs.values()), default=math.inf)

    @property
    def argmax_agreement(self) -> float | None:
        values = [o.argmax_agreement for o in self.outputs.values() if o.argmax_agreement is not None]
        return min(values) if values else None

    @property
    def accuracy_drop(self) -> float:
        """1 - agreement over the task outputs (the metric `max_accuracy_drop` budgets)."""
        return 1.0 - self.task_agreement

    @property
    def finite(self) -> bool:
        return all(o.nonfinite == 0 for o in self.outputs.values())

    def as_manifest(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "metric": "accuracy_drop = 1 - agreement (min cosine of long task output vectors, 1 - noise / "
                      "(2 signal) pooled over short ones) vs the fp32 reference",
            "task_outputs": list(self.task_outputs) or list(self.outputs),
            "max_abs_diff": self.max_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "min_cosine": self.min_cosine,
            "median_sqnr_db": _finite_or_none(self.median_sqnr_db),
            "accuracy_drop": self.accuracy_drop,
            "outputs": {name: {**o.as_manifest(), "median_sqnr_db": _finite_or_none(o.median_sqnr_db)}
                        for name, o in self.outputs.items()},
            "notes": list(self.notes),
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf


def _real_rows(value: np.ndarray, feed: Feed) -> np.ndarray:
    """Last-axis vectors of `value`, dropping padded token rows of per-token outputs (batch, seq, dim)."""
    mask = feed.get("attention_mask")
    if mask is not None and value.ndim == mask.ndim + 1 and value.shape[:-1] == mask.shape:
        rows: np.ndarray = value[mask.astype(bool)]
        return rows
    return value.reshape(-1, value.shape[-1]) if value.ndim else value.reshape(1, 1)


def pooling_of(artifact: Artifact | None) -> str | None:
    """The sentence-embedding pooling ('mean' | 'cls' | 'max') of an embedding artifact, else None."""
    from encoderforge.runtime.pipelines import PIPELINES

    if artifact is None or PIPELINES.get(artifact.task).contract.result != "embedding":
        return None
    embedding = artifact.manifest.embedding
    return (embedding.pooling if embedding else None) or "mean"


def _with_pooled(outputs: Sequence[Mapping[str, np.ndarray]], feeds: Sequence[Feed], mode: str) -> list[dict[str, np.ndarray]]:
    pooled = []
    for out, feed in zip(outputs, feeds):
        extended = dict(out)
        hidden = out.get("last_hidden_state")
        if hidden is not None and "attention_mask" in feed:
            extended["sentence_embedding"] = pool(np.asarray(hidden), feed["attention_mask"], mode)
        pooled.append(extended)
    return pooled


class _Pooled:
    """Running sums over every compared element of one output, across feeds."""

    def __init__(self) -> None:
        self.count, self.squares, self.noise, self.peak, self.worst = 0, 0.0, 0.0, 0.0, 0.0

    def add(self, ref: np.ndarray, cand: np.ndarray) -> None:
        diff = ref - cand
        self.count += ref.size
        self.squares += float(np.sum(ref**2))
        self.noise += float(np.sum(diff**2))
        self.peak = max(self.peak, float(np.max(np.abs(ref))))
        gap = np.abs(diff)
        self.worst = max(self.worst, float(gap.max()) if np.isfinite(gap).all() else math.inf)

    def sqnr_db(self) -> float:
        if not self.count or self.noise == 0.0:
            return math.inf
        if not math.isfinite(self.noise):
            return -math.inf
        return 10.0 * math.log10(max(self.squares, 1e-300) / self.noise)

    def relative_max_error(self) -> float:
        if not self.count:
            return 0.0
        if not math.isfinite(self.worst):
            return math.inf
        return self.worst / self.peak if self.peak > 0 else (0.0 if self.worst == 0 else math.inf)


def compare_outputs(
    reference: Sequence[Mapping[str, np.ndarray]], candidate: Sequence[Mapping[str, np.ndarray]],
    feeds: Sequence[Feed], *, pooling: str | None = None,
) -> FidelityReport:
    """Compare already computed outputs (one dict per feed) of a reference and a candidate. With `pooling`,
    a pooled ``sentence_embedding`` is compared too and is the task output the accuracy drop measures."""
    if len(reference) != len(candidate) or len(reference) != len(feeds):
        raise ValueError("reference, candidate and feeds must have the same length")
    task_outputs: tuple[str, ...] = ()
    if pooling is not None and reference and "last_hidden_state" in reference[0]:
        reference, candidate = _with_pooled(reference, feeds, pooling), _with_pooled(candidate, feeds, pooling)
        task_outputs = ("sentence_embedding",)
    names = list(reference[0]) if reference else []
    outputs: dict[str, OutputFidelity] = {}
    rows_total = 0
    for name in names:
        max_diff, agree, total, min_cos, nonfinite = 0.0, 0, 0, 1.0, 0
        sqnrs = []
        pooled = _Pooled()
        has_argmax = True
        for ref_out, cand_out, feed in zip(reference, candidate, feeds):
            if name not in cand_out:
                raise ValueError(f"candidate has no output {name!r}")
            ref = np.asarray(ref_out[name], dtype=np.float64)
            cand = np.asarray(cand_out[name], dtype=np.float64)
            if ref.shape != cand.shape:
                raise ValueError(f"output {name!r}: candidate shape {cand.shape} != reference {ref.shape}")
            nonfinite += int(np.size(cand) - np.count_nonzero(np.isfinite(cand)))
            ref_rows, cand_rows = _real_rows(ref, feed), _real_rows(cand, feed)
            if ref_rows.size == 0:
                continue
            pooled.add(ref_rows, cand_rows)
            diff = np.abs(ref_rows - cand_rows)
            max_diff = max(max_diff, float(np.nanmax(diff)) if np.isfinite(diff).all() else math.inf)
            if ref_rows.shape[-1] > 1:
                agree += int(np.sum(ref_rows.argmax(-1) == cand_rows.argmax(-1)))
            else:
                has_argmax = False
            total += ref_rows.shape[0]
            norms = np.linalg.norm(ref_rows, axis=-1) * np.linalg.norm(cand_rows, axis=-1)
            cosine = np.sum(ref_rows * cand_rows, axis=-1) / np.maximum(norms, 1e-30)
            both_zero = (np.linalg.norm(ref_rows, axis=-1) == 0) & (np.linalg.norm(cand_rows, axis=-1) == 0)
            cosine = np.where(both_zero, 1.0, cosine)
            cosine = np.where(np.isfinite(cosine), cosine, -1.0)
            min_cos = min(min_cos, float(cosine.min()))
            noise = float(np.sum((ref_rows - cand_rows) ** 2))
            signal = float(np.sum(ref_rows**2))
            if not math.isfinite(noise):
                sqnrs.append(-math.inf)
            elif noise == 0.0:
                sqnrs.append(math.inf)
            else:
                sqnrs.append(10.0 * math.log10(max(signal, 1e-300) / noise))
        rows_total += total
        outputs[name] = OutputFidelity(
            max_abs_diff=max_diff,
            argmax_agreement=(agree / total) if (has_argmax and total) else None,
            min_cosine=min_cos,
            median_sqnr_db=float(np.median(sqnrs)) if sqnrs else math.inf,
            nonfinite=nonfinite,
            pooled_sqnr_db=pooled.sqnr_db(),
            relative_max_error=pooled.relative_max_error(),
            vector_length=int(np.shape(reference[0][name])[-1]) if np.ndim(reference[0][name]) else 1,
        )
    return FidelityReport(outputs, samples=len(feeds), rows=rows_total, task_outputs=task_outputs)


def compare_models(
    reference: onnx.ModelProto | Path | str,
    candidate: onnx.ModelProto | Path | str,
    feeds: Sequence[Feed],
    *,
    output_names: Sequence[str] | None = None,
    artifact: Artifact | None = None,
    optimization: str = "all",
) -> FidelityReport:
    """Run `reference` and `candidate` on onnxruntime CPU over `feeds` and compare every output. Pass the
    `artifact` to measure embedding artifacts on their pooled sentence embeddings (see the module doc);
    `optimization` is the candidate's session level ("disable": Q/DQ simulated, no integer kernels)."""
    ref_session = make_session(reference)
    names = list(output_names) if output_names is not None else [o.name for o in ref_session.get_outputs()]
    ref_out = run_model(ref_session, feeds, output_names=names)
    cand_out = run_model(make_session(candidate, optimization=optimization), feeds, output_names=names)
    return compare_outputs(ref_out, cand_out, feeds, pooling=pooling_of(artifact))

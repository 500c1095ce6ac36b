"""What every task pipeline shares: the artifact, its tokenizer, a backend session, batched execution, and
the task contract it declares for the rest of the house (serving, bench, `run`, the CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
from tokenizers import Encoding
from typing_extensions import Self

from encoderforge.artifact import Artifact
from encoderforge.errors import ArtifactError, InputError, UnsupportedError
from encoderforge.runtime.backends import Session
from encoderforge.runtime.batching import length_batches
from encoderforge.tokenization import ArtifactTokenizer


@dataclass(frozen=True, kw_only=True)
class TaskContract:
    """How a task is asked and answered, declared once by its pipeline; serving, bench and `run` derive from
    it instead of branching on task names.

    request_fields  the keywords of one request, in order: ("text",), ("question", "context"), ...
    rows_batch      a list under every request field answers one result per row in one call
    result          what one row gives on the wire: a JSON document, or an FP32 vector (`encode`)
    unwraps_single  one row's call returns its result itself rather than a list of one
    served          every request field is one text per row, so the task can be served over the
                    text-per-row wire (serve, triton-repo, batch)
    many_as_dicts   several requests go in one call as a list of {field: value} dicts (not a list per field)
    masked_text     example inputs need the tokenizer's mask token (bench end to end)
    bench_options   call options for an end-to-end benchmark (e.g. one new token for generation)
    """

    request_fields: tuple[str, ...]
    rows_batch: bool
    result: Literal["json", "embedding"] = "json"
    unwraps_single: bool = False
    served: bool = True
    many_as_dicts: bool = False
    masked_text: bool = False
    bench_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def many(self, items: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(args, kwargs) that ask the pipeline `items` in one call; an item is a text, or a tuple holding one
        value per request field."""
        if len(self.request_fields) == 1:
            return (list(items),), {}
        rows = [tuple(item) for item in items]
        if self.many_as_dicts:
            return ([dict(zip(self.request_fields, row)) for row in rows],), {}
        return (), {name: [row[i] for row in rows] for i, name in enumerate(self.request_fields)}


class Pipeline:
    task: str = ""
    contract: ClassVar[TaskContract]

    def __init__(self, artifact: Artifact, session: Session) -> None:
        self.artifact = artifact
        self.session = session
        self.tokenizer = ArtifactTokenizer.from_artifact(artifact)
        self.config: dict[str, Any] = artifact.config()
        check_graph(artifact, session, self.tokenizer)
        self._per_token = {spec.name for spec in artifact.manifest.outputs if spec.per_token}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.artifact.path)!r}, backend={self.session.backend!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def forward(
        self, encodings: Sequence[Encoding], *, batch_size: int = 32, max_tokens: int | None = 16384
    ) -> list[dict[str, np.ndarray]]:
        """Run encodings in length-sorted batches; return one dict of outputs per encoding, in input order.
        Per-token outputs are trimmed to the encoding's own length (no padding rows)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise InputError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
        results: list[dict[str, np.ndarray]] = [{} for _ in encodings]
        lengths = [len(e.ids) for e in encodings]
        # Padding-sensitive models (ConvBERT, see FamilySpec) batch texts of one length only, so results equal
        # unbatched transformers.
        if self.artifact.manifest.padding_sensitive:
            batches = equal_length_batches(lengths, batch_size=batch_size)
        else:
            batches = length_batches(lengths, batch_size=batch_size, max_tokens=max_tokens)
        def run(batch: list[int]) -> dict[str, np.ndarray]:
            return self.session.run(self.tokenizer.to_feed([encodings[i] for i in batch]))

        parallel = min(self.session.parallel_calls, len(batches))
        if parallel > 1:  # OpenVINO streams: batches in flight together, results in batch order
            with ThreadPoolExecutor(parallel, thread_name_prefix="encoderforge-forward") as pool:
                outputs_per_batch: Iterable[dict[str, np.ndarray]] = list(pool.map(run, batches))
        else:
            outputs_per_batch = map(run, batches)
        for batch, outputs in zip(batches, outputs_per_batch):
            for row, index in enumerate(batch):
                results[index] = {
                    name: value[row, : lengths[index]] if name in self._per_token else value[row]
                    for name, value in outputs.items()
                }
        return results

    # ---- shared by the task pipelines (additive helpers) ----

    def encode(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Sentence embeddings exist only for feature-extraction artifacts; every other task says so clearly."""
        raise UnsupportedError(
            f"encode() needs a feature-extraction (embed) artifact; {str(self.artifact.path)!r} is a "
            f"{self.task or self.artifact.task} artifact: call the pipeline itself instead"
        )


def check_graph(artifact: Artifact, session: Session, tokenizer: ArtifactTokenizer) -> None:
    """What the task's post-processing and the graph's embedding need, checked at load time instead of
    failing at call time: the head's outputs are graph outputs, and no token id is past the vocabulary."""
    from encoderforge.tasks import task_head

    try:
        head = task_head(artifact.task)
    except KeyError as exc:
        raise ArtifactError(f"{artifact.path}: manifest task {artifact.task!r} is unknown; re-export the artifact") \
            from exc
    graph_outputs = {t.name for t in session.outputs()}
    missing = [o.name for o in head.outputs if o.name not in graph_outputs]
    if missing:
        raise ArtifactError(
            f"{artifact.path}: manifest task {artifact.task!r} needs graph output(s) {', '.join(missing)}, but the "
            f"graph has {', '.join(sorted(graph_outputs))}; the manifest does not match the graph: re-export it"
        )
    vocab = artifact.config().get("vocab_size")
    tokens = tokenizer.tokenizer.get_vocab_size(with_added_tokens=True)
    if isinstance(vocab, int) and not isinstance(vocab, bool) and tokens > vocab:
        raise ArtifactError(
            f"{artifact.path}: the tokenizer has {tokens} tokens but the model's vocabulary (config.json vocab_size) "
            f"is {vocab}; ids past it cannot be embedded: the tokenizer does not belong to this graph, re-export it"
        )


def text_batch(inputs: Any, *, name: str = "inputs") -> tuple[list[str], bool]:
    """(texts, single) for one str or a list of str; anything else (None, non-str, empty or whitespace-only
    text, a list mixing types) is an InputError naming the bad item."""
    if inputs is None:
        raise InputError(f"missing {name}: pass a str or a list of str")
    single = isinstance(inputs, str)
    items = [inputs] if single else inputs
    if not isinstance(items, (list, tuple)):
        raise InputError(f"{name} must be a str or a list of str, got {type(inputs).__name__}")
    if not items:
        raise InputError(f"{name} is an empty list; pass at least one text")
    for index, item in enumerate(items):
        check_text(item, f"{name}[{index}]" if not single else name)
    return list(items), single


def check_text(item: Any, where: str) -> str:
    if item is None:
        raise InputError(f"{where} is None; pass a non-empty str")
    if not isinstance(item, str):
        raise InputError(f"{where} is {type(item).__name__} {item!r:.60}, not a str")
    if not item.strip():
        raise InputError(f"{where} is empty or whitespace only ({item!r:.20}); pass some text")
    return item


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    out: np.ndarray = e / e.sum(axis=axis, keepdims=True)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))
    return out


def clean_up_spaces(artifact: Artifact) -> bool:
    """transformers' `clean_up_tokenization_spaces` for this tokenizer (tokenizer_config.json; default False as in
    transformers 5, and never for BPE models, whose cleanup transformers 5 skips)."""
    import json

    path = artifact.path / "tokenizer_config.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        settings = {}
    return bool(settings.get("clean_up_tokenization_spaces", False))


def decode_ids(tokenizer: ArtifactTokenizer, ids: Sequence[int], *, skip_special_tokens: bool, clean_up: bool) -> str:
    """transformers' `tokenizer.decode` for a fast tokenizer, on `tokenizers` alone."""
    text: str = tokenizer.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
    if clean_up and type(tokenizer.tokenizer.model).__name__ != "BPE":
        for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                              (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(before, after)
    return text


def tokens_to_string(tokenizer: ArtifactTokenizer, tokens: Sequence[str]) -> str:
    """transformers' `convert_tokens_to_string` for a fast tokenizer."""
    decoder = tokenizer.tokenizer.decoder
    return str(decoder.decode(list(tokens))) if decoder is not None else " ".join(tokens)


def one_of(inputs: Any, text: Any, *, name: str = "inputs") -> Any:
    """The texts given positionally or as text= (the CLI's and JSONL's keyword); exactly one of them."""
    if inputs is not None and text is not None:
        raise InputError(f"pass the texts once, either positionally ({name}) or as text=, not both")
    value = inputs if inputs is not None else text
    if value is None:
        raise InputError(f"missing required argument: {name} (a str or a list of str)")
    return value


def equal_length_batches(lengths: Sequence[int], *, batch_size: int) -> list[list[int]]:
    """Batches of texts with exactly the same length (no padding at all), longest first."""
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(length, []).append(index)
    return [group[i: i + batch_size] for length in sorted(groups, reverse=True)
            for group in [groups[length]] for i in range(0, len(group), batch_size)]

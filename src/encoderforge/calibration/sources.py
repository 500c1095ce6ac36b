"""Calibration sources: a text file, a JSONL file or a Python iterable, tokenized with the artifact's tokenizer.

    text file   one text per line (blank lines skipped); for pair heads (question-answering,
                multiple-choice) a tab separates the parts: ``question<TAB>context`` or
                ``prompt<TAB>choice 1<TAB>choice 2 ...``
    JSONL       one JSON object per line with a ``text`` field (``text_field=`` in the API to read another);
                pairs as ``text`` + ``text_pair`` or ``question`` + ``context``; choices as ``choices`` (list)
    iterable    strings, (first, second) tuples, or (prompt, [choices]) tuples

Every bad input raises `InputError` naming the file, the line and the fix. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoderforge.artifact import Artifact
from encoderforge.errors import InputError

Feed = dict[str, np.ndarray]
DEFAULT_SAMPLES = 64


def _from_text_file(path: Path) -> list[Any]:
    items: list[Any] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")]
        if any(not p for p in parts):
            raise InputError(f"{path}:{number}: empty field between tabs; remove the stray tab")
        items.append(parts[0] if len(parts) == 1 else tuple(parts) if len(parts) == 2 else (parts[0], parts[1:]))
    return items


def _from_jsonl(path: Path, text_field: str) -> list[Any]:
    items: list[Any] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg}); write one JSON object per line") from exc
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object with a {text_field!r} field")
        if "question" in record and "context" in record:
            item: Any = (record["question"], record["context"])
        elif text_field in record:
            first = record[text_field]
            if "choices" in record:
                item = (first, list(record["choices"]))
            elif "text_pair" in record:
                item = (first, record["text_pair"])
            else:
                item = first
        else:
            raise InputError(
                f"{path}:{number}: no {text_field!r} field (keys: {sorted(record)}); give every line a "
                f"{text_field!r} field (the API's text_field= reads another one)"
            )
        items.append(_check_item(item, f"{path}:{number}"))
    return items


def _check_item(item: Any, where: str) -> Any:
    if isinstance(item, str):
        if not item.strip():
            raise InputError(f"{where}: empty text; remove it")
        return item
    if isinstance(item, (tuple, list)) and len(item) == 2:
        first, second = item
        if isinstance(first, str) and isinstance(second, str):
            return (first, second)
        if isinstance(first, str) and isinstance(second, (list, tuple)) and second and all(
            isinstance(c, str) for c in second
        ):
            return (first, list(second))
    raise InputError(
        f"{where}: {type(item).__name__} {item!r:.60} is not a text; give a str, a (str, str) pair or "
        "(prompt, [choices])"
    )


def read_items(source: str | Path | Iterable[Any], *, text_field: str = "text") -> list[Any]:
    """Texts (or pairs / prompt+choices) from a file path or an iterable; at least one, else InputError."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InputError(f"calibration data {str(source)!r} is not a file; pass a .txt or .jsonl file")
        try:
            items = _from_jsonl(path, text_field) if path.suffix.lower() in (".jsonl", ".json") else _from_text_file(path)
        except UnicodeDecodeError as exc:
            raise InputError(f"calibration data {str(path)!r} is not UTF-8 text; convert it to UTF-8") from exc
        where = str(path)
    elif isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise InputError(
            f"calibration data must be a file path or an iterable of texts, got {type(source).__name__}"
        )
    else:
        items = [_check_item(item, f"calibration item {i}") for i, item in enumerate(source)]
        where = "the calibration iterable"
    if not items:
        raise InputError(f"{where} holds no texts; give at least one calibration text")
    return items


def default_items(count: int = DEFAULT_SAMPLES) -> list[str]:
    """Built-in calibration text (the synthetic corpus lines and combinations) when the user gives none."""
    from encoderforge.corpus import sentence_corpus

    return sentence_corpus(count, seed=1)


def _adapt(items: Sequence[Any], kind: str) -> list[Any]:
    """Make items fit the head: plain texts become pairs for QA (consecutive texts) and prompts for MC."""
    from encoderforge.corpus import CHOICES as _CHOICES

    adapted: list[Any] = []
    for i, item in enumerate(items):
        if kind == "single":
            adapted.append(item if isinstance(item, str) else item[0] if isinstance(item[1], list) else item)
        elif kind == "pairs":
            if isinstance(item, str):
                adapted.append((item, items[(i + 1) % len(items)] if isinstance(items[(i + 1) % len(items)], str)
                                else item))
            else:
                adapted.append(item if isinstance(item[1], str) else (item[0], item[1][0]))
        else:  # mc
            if isinstance(item, str):
                adapted.append((item, list(_CHOICES)))
            elif isinstance(item[1], str):
                adapted.append((item[0], [item[1], *_CHOICES[1:]]))
            else:
                adapted.append(item)
    return adapted


def calibration_feeds(
    artifact: Artifact,
    source: str | Path | Iterable[Any] | None = None,
    *,
    samples: int | None = DEFAULT_SAMPLES,
    batch_size: int = 1,
    text_field: str = "text",
) -> list[Feed]:
    """Tokenized feeds for calibration: at most `samples` items from `source` (built-in text when None)."""
    from encoderforge.fidelity import _encode_batch, _task_kind
    from encoderforge.tokenization import ArtifactTokenizer

    items = default_items(samples or DEFAULT_SAMPLES) if source is None else read_items(source, text_field=text_field)
    if samples is not None:
        if samples < 1:
            raise InputError(f"calibration samples must be >= 1, got {samples}")
        items = items[:samples]
    kind = _task_kind(artifact)
    items = _adapt(items, kind)
    if kind == "mc" and len({len(item[1]) for item in items}) > 1:
        raise InputError("multiple-choice calibration items must all have the same number of choices")
    tokenizer = ArtifactTokenizer.from_artifact(artifact)
    return [_encode_batch(tokenizer, kind, items[i:i + batch_size]) for i in range(0, len(items), batch_size)]


def pad_feeds(feeds: Sequence[Feed], pad_id: int, length: int | None = None) -> list[Feed]:
    """Pad every feed's last axis to one common length (histogram calibrators need equal shapes):
    input_ids with the pad id, the attention mask and the rest with 0."""
    target = length or max(f["input_ids"].shape[-1] for f in feeds)
    padded = []
    for feed in feeds:
        out = {}
        for name, value in feed.items():
            extra = target - value.shape[-1]
            widths = [(0, 0)] * (value.ndim - 1) + [(0, max(extra, 0))]
            out[name] = np.pad(value, widths, constant_values=pad_id if name == "input_ids" else 0)
        padded.append(out)
    return padded

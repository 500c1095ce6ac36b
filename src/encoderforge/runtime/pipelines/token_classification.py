"""token-classification (NER): transformers' TokenClassificationPipeline output, on onnxruntime.

    ner("Emmanuel Macron vit à Paris.")                               # one dict per non-"O" token:
        # {'entity', 'score', 'index', 'word', 'start', 'end'}
    ner("...", aggregation_strategy="simple")                         # grouped entities:
        # {'entity_group', 'score', 'word', 'start', 'end'}

aggregation_strategy: none / simple / first / average / max, with transformers' rules (word boundaries from the
tokenizer's continuing-subword prefix, else its whitespace heuristic). ignore_labels defaults to ["O"].
start/end are character offsets into the input text. Texts beyond the model's max length are truncated
(truncation=True, the default; entities past the limit are not reported) or rejected (truncation=False).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from encoderforge.errors import UnsupportedError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import (
    Pipeline,
    TaskContract,
    one_of,
    softmax,
    text_batch,
    tokens_to_string,
)

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"
    contract = TaskContract(request_fields=("text",), rows_batch=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.id2label = {int(k): str(v) for k, v in (self.config.get("id2label") or {}).items()}
        model = self.tokenizer.tokenizer.model
        self._word_aware = bool(getattr(model, "continuing_subword_prefix", None))
        self._unk_id = self.artifact.manifest.tokenizer.unk_token_id

    def __call__(
        self,
        inputs: str | Sequence[str] | None = None,
        *,
        text: str | Sequence[str] | None = None,
        aggregation_strategy: str | None = None,
        ignore_labels: Sequence[str] | None = None,
        truncation: bool = True,
        batch_size: int = 32,
    ) -> Any:
        texts, single = text_batch(one_of(inputs, text), name="text")
        strategy = "none" if aggregation_strategy is None else str(aggregation_strategy).lower()
        if strategy not in STRATEGIES:
            raise UnsupportedError(
                f"unknown aggregation_strategy {aggregation_strategy!r}; choose one of {', '.join(STRATEGIES)}"
            )
        ignore = ["O"] if ignore_labels is None else list(ignore_labels)
        encodings = self.tokenizer.encode(texts, truncation=truncation)
        outputs = self.forward(encodings, batch_size=batch_size)
        results = []
        for sentence, encoding, output in zip(texts, encodings, outputs):
            scores = softmax(output["logits"])
            entities = self.aggregate(self.gather_pre_entities(sentence, encoding, scores, strategy), strategy)
            results.append([e for e in entities
                            if e.get("entity") not in ignore and e.get("entity_group") not in ignore])
        return results[0] if single else results

    def _label(self, index: int) -> str:
        return self.id2label.get(index, f"LABEL_{index}")

    def gather_pre_entities(self, sentence: str, encoding: Any, scores: np.ndarray, strategy: str) -> list[dict[str, Any]]:
        pre_entities = []
        vocab = self.tokenizer.tokenizer
        for idx, token_scores in enumerate(scores):
            if encoding.special_tokens_mask[idx]:
                continue
            token_id = int(encoding.ids[idx])
            word = vocab.id_to_token(token_id) or ""
            start, end = encoding.offsets[idx]
            word_ref = sentence[start:end]
            if self._word_aware:
                is_subword = len(word) != len(word_ref)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1: start + 1]
            if token_id == self._unk_id:
                word, is_subword = word_ref, False
            pre_entities.append({"word": word, "scores": token_scores, "start": int(start), "end": int(end),
                                 "index": idx, "is_subword": is_subword})
        return pre_entities

    def aggregate(self, pre_entities: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
        if strategy in ("none", "simple"):
            entities = []
            for pre in pre_entities:
                best = int(pre["scores"].argmax())
                entities.append({"entity": self._label(best), "score": float(pre["scores"][best]),
                                 "index": pre["index"], "word": pre["word"], "start": pre["start"], "end": pre["end"]})
        else:
            entities = self.aggregate_words(pre_entities, strategy)
        return entities if strategy == "none" else self.group_entities(entities)

    def aggregate_word(self, entities: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
        word = tokens_to_string(self.tokenizer, [e["word"] for e in entities])
        if strategy == "first":
            scores = entities[0]["scores"]
        elif strategy == "max":
            scores = max(entities, key=lambda e: e["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([e["scores"] for e in entities]), axis=0)
        best = int(scores.argmax())
        return {"entity": self._label(best), "score": float(scores[best]), "word": word,
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    def aggregate_words(self, entities: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
        words: list[dict[str, Any]] = []
        group: list[dict[str, Any]] | None = None
        for entity in entities:
            if group is None:
                group = [entity]
            elif entity["is_subword"]:
                group.append(entity)
            else:
                words.append(self.aggregate_word(group, strategy))
                group = [entity]
        if group is not None:
            words.append(self.aggregate_word(group, strategy))
        return words

    def group_sub_entities(self, entities: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.mean(np.nanmean([e["score"] for e in entities]))),
            "word": tokens_to_string(self.tokenizer, [e["word"] for e in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def group_entities(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        current: list[dict[str, Any]] = []
        for entity in entities:
            if not current:
                current.append(entity)
                continue
            bi, tag = _tag(entity["entity"])
            _, last_tag = _tag(current[-1]["entity"])
            if tag == last_tag and bi != "B":
                current.append(entity)
            else:
                groups.append(self.group_sub_entities(current))
                current = [entity]
        if current:
            groups.append(self.group_sub_entities(current))
        return groups


def _tag(name: str) -> tuple[str, str]:
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name


PIPELINES.register("token-classification", TokenClassificationPipeline)

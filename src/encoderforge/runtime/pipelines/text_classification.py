"""text-classification: transformers' TextClassificationPipeline output, on onnxruntime.

    clf("great film")                                  # [{'label': 'POSITIVE', 'score': 0.99}]
    clf(["a", "b"])                                    # [{'label', 'score'}, {'label', 'score'}]
    clf("a", top_k=None)                               # every label, best first
    clf({"text": "premise", "text_pair": "hypothesis"})  # a pair: {'label', 'score'}

Scores: softmax, sigmoid or none, chosen as transformers does from config.json (problem_type, num_labels) unless
function_to_apply says otherwise. Texts beyond the model's max length are truncated (truncation=True, the
default) or rejected with InputError (truncation=False).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from encoderforge.errors import InputError, UnsupportedError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import Pipeline, TaskContract, check_text, one_of, sigmoid, softmax
from encoderforge.tokenization import TextInput

FUNCTIONS = ("softmax", "sigmoid", "none")
_UNSET: Any = ""  # transformers' sentinel: top_k=None means "all labels", an absent top_k the legacy format


class TextClassificationPipeline(Pipeline):
    task = "text-classification"
    contract = TaskContract(request_fields=("text",), rows_batch=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        id2label = self.config.get("id2label") or {}
        self.id2label = {int(k): str(v) for k, v in id2label.items()}
        self.num_labels = len(self.id2label) or int(self.config.get("num_labels", 2))
        for index in range(self.num_labels):
            self.id2label.setdefault(index, f"LABEL_{index}")

    def default_function(self) -> str:
        problem = self.config.get("problem_type")
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or self.num_labels == 1:
            return "sigmoid"
        if problem == "single_label_classification" or self.num_labels > 1:
            return "softmax"
        return str(self.config.get("function_to_apply", "none")).lower()

    def __call__(
        self,
        inputs: Any = None,
        *,
        text: str | None = None,
        text_pair: str | None = None,
        top_k: int | None = _UNSET,
        function_to_apply: str | None = None,
        truncation: bool = True,
        batch_size: int = 32,
    ) -> Any:
        if text_pair is not None:
            if inputs is not None:
                raise InputError("text_pair= goes with text=; pass {'text': ..., 'text_pair': ...} positionally instead")
            inputs = {"text": text, "text_pair": text_pair}
            text = None
        inputs = one_of(inputs, text)
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items:
            raise InputError(f"inputs must be a str, a {{'text', 'text_pair'}} dict or a non-empty list of them, "
                             f"got {type(inputs).__name__} {inputs!r:.60}")
        texts = [_text_input(item, index) for index, item in enumerate(items)]
        function = self.default_function() if function_to_apply is None else str(function_to_apply).lower()
        if function not in FUNCTIONS:
            raise UnsupportedError(f"unknown function_to_apply {function_to_apply!r}; choose one of {', '.join(FUNCTIONS)}")
        legacy = top_k is _UNSET
        if not legacy and top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise InputError(f"top_k must be a positive int or None (all labels), got {top_k!r}")
        outputs = self.forward(self.tokenizer.encode(texts, truncation=truncation), batch_size=batch_size)
        results = [self._postprocess(out["logits"], function, 1 if legacy else top_k, legacy) for out in outputs]
        if single:
            # transformers wraps a single str's legacy result in a list, but not a single dict's
            return [results[0]] if isinstance(inputs, str) and legacy else results[0]
        return results

    def _postprocess(self, logits: np.ndarray, function: str, top_k: int | None, legacy: bool) -> Any:
        logits = np.asarray(logits, dtype=np.float32)
        scores = sigmoid(logits) if function == "sigmoid" else softmax(logits) if function == "softmax" else logits
        if top_k == 1 and legacy:
            return {"label": self.id2label[int(scores.argmax())], "score": float(scores.max())}
        ranked = [{"label": self.id2label[i], "score": float(s)} for i, s in enumerate(scores)]
        ranked.sort(key=lambda x: x["score"], reverse=True)  # type: ignore[arg-type, return-value]
        return ranked if top_k is None else ranked[:top_k]


def _text_input(item: Any, index: int) -> TextInput:
    if isinstance(item, dict):
        unknown = sorted(set(item) - {"text", "text_pair"})
        if unknown or "text" not in item:
            raise InputError(f"input {index}: a pair is {{'text': ..., 'text_pair': ...}}; got keys {sorted(item)}")
        first = check_text(item["text"], f"input {index} text")
        if item.get("text_pair") is None:
            return first
        return (first, check_text(item["text_pair"], f"input {index} text_pair"))
    if isinstance(item, (list, tuple)):
        raise InputError(f"input {index} is a {type(item).__name__}; send a text pair as "
                         "{'text': 'My text', 'text_pair': 'My pair'}")
    return check_text(item, f"input {index}")


PIPELINES.register("text-classification", TextClassificationPipeline)

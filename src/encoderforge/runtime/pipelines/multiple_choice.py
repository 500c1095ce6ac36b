"""multiple-choice: one prompt, N choices -> a softmax score per choice (transformers has no such pipeline).

    mc("The cat sat on the", ["mat", "moon", "idea"])
    # {'scores': [{'choice': 'mat', 'score': 0.71}, {'choice': 'moon', ...}, ...],   # input order, sum to 1
    #  'best': {'choice': 'mat', 'score': 0.71, 'index': 0}}
    mc(prompt="...", choices=[...])                       # keywords (the CLI's and JSONL's form)
    mc([{"prompt": ..., "choices": [...]}, ...])          # several questions: one result each

Each (prompt, choice) pair is tokenized as a text pair, the N pairs padded to their longest and run as one
(1, N, tokens) batch, as AutoModelForMultipleChoice expects; the scores are softmax(logits) over the choices.
Pairs beyond the model's max length are truncated longest-first (truncation=True, the default) or rejected
(truncation=False). A single choice gets score 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from encoderforge.errors import InputError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import Pipeline, TaskContract, check_text, softmax


class MultipleChoicePipeline(Pipeline):
    task = "multiple-choice"
    contract = TaskContract(request_fields=("prompt", "choices"), rows_batch=False, served=False,
                            many_as_dicts=True)

    def __call__(
        self,
        inputs: Any = None,
        choices: Sequence[str] | None = None,
        *,
        prompt: str | None = None,
        text: str | None = None,
        truncation: bool = True,
    ) -> Any:
        if isinstance(inputs, (list, tuple)) and choices is None and prompt is None and text is None:
            if not inputs or not all(isinstance(item, dict) for item in inputs):
                raise InputError("several questions are a non-empty list of {'prompt': ..., 'choices': [...]} dicts")
            return [self._one(*_question(item, i), truncation=truncation) for i, item in enumerate(inputs)]
        if isinstance(inputs, dict):
            if choices is not None or prompt is not None or text is not None:
                raise InputError("pass either one {'prompt', 'choices'} dict or prompt= and choices=, not both")
            return self._one(*_question(inputs, 0), truncation=truncation)
        given = [v for v in (inputs, prompt, text) if v is not None]
        if len(given) > 1:
            raise InputError("pass the prompt once: positionally, as prompt= or as text=")
        if not given:
            raise InputError("missing required argument: prompt (a str), with choices (a list of str)")
        return self._one(given[0], choices, truncation=truncation)

    def _one(self, prompt: Any, choices: Any, *, truncation: bool) -> dict[str, Any]:
        check_text(prompt, "prompt")
        if choices is None:
            raise InputError("missing required argument: choices (a list of at least one str)")
        if isinstance(choices, str) or not isinstance(choices, (list, tuple)) or not choices:
            raise InputError(f"choices must be a non-empty list of str, got {choices!r:.60}")
        for index, choice in enumerate(choices):
            check_text(choice, f"choices[{index}]")
        encodings = self.tokenizer.encode([(prompt, c) for c in choices], truncation=truncation)
        feed = {name: array[None] for name, array in self.tokenizer.to_feed(encodings).items()}
        logits = np.asarray(self.session.run(feed)["logits"][0], dtype=np.float32)
        scores = softmax(logits)
        best = int(scores.argmax())
        return {
            "scores": [{"choice": c, "score": float(s)} for c, s in zip(choices, scores)],
            "best": {"choice": choices[best], "score": float(scores[best]), "index": best},
        }


def _question(item: dict[str, Any], index: int) -> tuple[Any, Any]:
    unknown = sorted(set(item) - {"prompt", "choices"})
    if unknown:
        raise InputError(f"question {index}: unknown keys {unknown}; use {{'prompt': ..., 'choices': [...]}}")
    if "prompt" not in item:
        raise InputError(f"question {index}: missing 'prompt'")
    return item["prompt"], item.get("choices")


PIPELINES.register("multiple-choice", MultipleChoicePipeline)

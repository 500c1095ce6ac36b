"""fill-mask: transformers' FillMaskPipeline output, on onnxruntime.

    mlm("Paris is the <mask> of France.")               # top 5: {'score', 'token', 'token_str', 'sequence'}
    mlm("... <mask> ...", top_k=2, targets=["capital", "city"])
    mlm(["... <mask> ...", "... <mask> ..."])           # one list per text
    mlm("<mask> and <mask>")                            # one list per mask (disjoint probabilities)

A text without the mask token is an InputError; targets missing from the vocabulary are replaced by their first
token (or dropped when they have none), as transformers does. Texts beyond the model's max length are truncated
(truncation=True, the default: a mask past the limit is then missing) or rejected (truncation=False).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from encoderforge.errors import InputError, UnsupportedError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import (
    Pipeline,
    TaskContract,
    clean_up_spaces,
    decode_ids,
    one_of,
    softmax,
    text_batch,
)

log = logging.getLogger(__name__)


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    # a one-text list answers its candidates unwrapped, as transformers does
    contract = TaskContract(request_fields=("text",), rows_batch=True, masked_text=True, unwraps_single=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.artifact.manifest.tokenizer
        self.mask_token: str | None = settings.mask_token
        self.mask_token_id: int | None = settings.mask_token_id
        self._clean_up = clean_up_spaces(self.artifact)
        self._pad_id = settings.pad_token_id

    def __call__(
        self,
        inputs: str | Sequence[str] | None = None,
        *,
        text: str | Sequence[str] | None = None,
        top_k: int = 5,
        targets: str | Sequence[str] | None = None,
        truncation: bool = True,
        batch_size: int = 32,
    ) -> Any:
        if self.mask_token_id is None:
            raise UnsupportedError(f"the tokenizer of {str(self.artifact.path)!r} defines no mask token")
        texts, single = text_batch(one_of(inputs, text), name="text")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be a positive int, got {top_k!r}")
        target_ids = None if targets is None else self.target_ids(targets)
        encodings = self.tokenizer.encode(texts, truncation=truncation)
        for index, encoding in enumerate(encodings):
            if self.mask_token_id not in encoding.ids:
                raise InputError(f"no mask_token ({self.mask_token}) found in input {index} {texts[index]!r:.60}"
                                 + ("" if truncation is False or len(encoding.ids) < self.tokenizer.max_length
                                    else " (after truncation to the model's max length)"))
        outputs = self.forward(encodings, batch_size=batch_size)
        results = [self._postprocess(np.asarray(e.ids), out["logits"], top_k, target_ids)
                   for e, out in zip(encodings, outputs)]
        if single or len(results) == 1:  # transformers returns a one-item list's result unwrapped
            return results[0]
        return results

    def target_ids(self, targets: str | Sequence[str]) -> np.ndarray:
        items = [targets] if isinstance(targets, str) else targets
        if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
            raise InputError(f"targets must be a str or a list of str, got {targets!r:.60}")
        vocab = self.tokenizer.tokenizer.get_vocab(with_added_tokens=True)
        ids = []
        for target in items:
            id_ = vocab.get(target)
            if id_ is None:
                pieces = self.tokenizer.tokenizer.encode(target, add_special_tokens=False).ids
                if not pieces:
                    log.warning("target %r is not in the vocabulary and has no token; ignoring it", target)
                    continue
                id_ = pieces[0]
                log.warning("target %r is not in the vocabulary; using %r", target,
                            self.tokenizer.tokenizer.id_to_token(id_))
            ids.append(int(id_))
        unique = list(set(ids))
        if not unique:
            raise InputError(f"none of the targets {list(items)!r:.80} maps to a token; pass at least one valid target")
        return np.array(unique)

    def _postprocess(self, input_ids: np.ndarray, logits: np.ndarray, top_k: int,
                     target_ids: np.ndarray | None) -> Any:
        if target_ids is not None and target_ids.shape[0] < top_k:
            top_k = int(target_ids.shape[0])
        masked = np.nonzero(input_ids == self.mask_token_id)[0]
        probs = softmax(np.asarray(logits, dtype=np.float32)[masked])
        if target_ids is not None:
            probs = probs[..., target_ids]
        single_mask = len(masked) == 1
        result = []
        for i, row_probs in enumerate(probs):
            # stable descending order: ties keep the lower index first, as torch.topk does on CPU
            order = np.argsort(-row_probs, kind="stable")[:top_k]
            row = []
            for p in order:
                token = int(target_ids[p]) if target_ids is not None else int(p)
                tokens = input_ids.copy()
                tokens[masked[i]] = token
                if self._pad_id is not None:
                    tokens = tokens[tokens != self._pad_id]
                row.append({
                    "score": float(row_probs[p]),
                    "token": token,
                    "token_str": decode_ids(self.tokenizer, [token], skip_special_tokens=False, clean_up=self._clean_up),
                    "sequence": decode_ids(self.tokenizer, tokens.tolist(), skip_special_tokens=single_mask,
                                           clean_up=self._clean_up),
                })
            result.append(row)
        return result[0] if single_mask else result


PIPELINES.register("fill-mask", FillMaskPipeline)

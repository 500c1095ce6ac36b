"""text-generation: greedy decoding for the causal-LM heads, like transformers' TextGenerationPipeline.

    gen = load("out/roberta-clm")                       # exported with --task causal-lm [--with-past]
    gen("The museum in Lyon", max_new_tokens=20)        # [{'generated_text': 'The museum in Lyon ...'}]
    gen(["a", "b"], max_new_tokens=5)                   # one list per prompt
    gen("...", return_full_text=False)                  # only the new text
    gen("...", return_tensors=True)                     # [{'generated_token_ids': [...prompt, ...new]}]
    gen.generate_ids([0, 302, 511], max_new_tokens=8)   # token ids in, token ids out

Decoding is greedy (argmax, as `do_sample=False`), one prompt at a time, stopping after `max_new_tokens` or at
the config's eos_token_id (kept in the output, as transformers does). With `use_cache=None` (the default) it runs
the artifact's KV-cache graph (model_with_past.onnx, written by `export --with-past`) when present: one prefill
with an empty past, then one token per step. Without it, every step reruns model.onnx on the whole sequence.
Both give the same tokens (tests/test_generation.py).

The prompt is tokenized with the tokenizer's special tokens (transformers 5's pipeline default;
add_special_tokens=False turns them off). Positions are the model's own (RoBERTa family: padding_idx + 1 onward);
note that transformers 5's `generate()` passes 0-based position_ids unless given some, which differs from the
RoBERTa/CamemBERT model's own numbering. Bad input (empty or whitespace prompt, non-str, max_new_tokens < 1,
prompt plus max_new_tokens beyond the model's max length) is an InputError that says what to change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from encoderforge.errors import InputError
from encoderforge.manifest import WithPast
from encoderforge.runtime.backends import Session, get_backend
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import (
    Pipeline,
    TaskContract,
    clean_up_spaces,
    decode_ids,
    one_of,
    text_batch,
)

log = logging.getLogger(__name__)


def positions(ids: np.ndarray, *, first: int, pad_id: int | None) -> np.ndarray:
    """The model's position ids for a whole sequence (batch, length).

    BERT-style (pad_id None): first, first + 1, ...  RoBERTa-style: pad ids get padding_idx (= first - 1) and the
    other tokens count from first, skipping pads, as `create_position_ids_from_input_ids` does."""
    ids = np.asarray(ids)
    if pad_id is None:
        return np.broadcast_to(first + np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()
    keep = (ids != pad_id).astype(np.int64)
    out: np.ndarray = np.cumsum(keep, axis=1) * keep + (first - 1)
    return out


class TextGenerationPipeline(Pipeline):
    task = "text-generation"
    contract = TaskContract(request_fields=("text",), rows_batch=False, served=False,
                            bench_options=MappingProxyType({"max_new_tokens": 1}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        eos = self.config.get("eos_token_id")
        self.eos_ids = frozenset([] if eos is None else [int(e) for e in (eos if isinstance(eos, list) else [eos])])
        self.with_past: WithPast | None = self.artifact.manifest.with_past
        self._past_session: Session | None = None
        self._past_lock = threading.Lock()  # threads share one lazily loaded KV-cache session
        self._clean_up = clean_up_spaces(self.artifact)

    def close(self) -> None:
        if self._past_session is not None:
            self._past_session.close()
            self._past_session = None
        super().close()

    @property
    def has_cache_graph(self) -> bool:
        return self.with_past is not None

    def __call__(
        self,
        inputs: str | Sequence[str] | None = None,
        *,
        text: str | Sequence[str] | None = None,
        max_new_tokens: int = 20,
        use_cache: bool | None = None,
        return_full_text: bool = True,
        return_tensors: bool = False,
        add_special_tokens: bool = True,
        skip_special_tokens: bool = True,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        prompts, single = text_batch(one_of(inputs, text), name="text")
        results: list[list[dict[str, Any]]] = []
        for prompt in prompts:
            self.tokenizer.check([prompt])  # the size cap, before tokenizing
            ids = self.tokenizer.tokenizer.encode(prompt, add_special_tokens=add_special_tokens).ids
            sequence = self.generate_ids(ids, max_new_tokens=max_new_tokens, use_cache=use_cache)
            if return_tensors:
                results.append([{"generated_token_ids": sequence}])
                continue
            new_text = decode_ids(self.tokenizer, sequence[len(ids):], skip_special_tokens=skip_special_tokens,
                                  clean_up=self._clean_up)
            results.append([{"generated_text": prompt + new_text if return_full_text else new_text}])
        return results[0] if single else results

    def generate_ids(self, prompt_ids: Sequence[int], *, max_new_tokens: int = 20,
                     use_cache: bool | None = None) -> list[int]:
        """Greedy continuation of `prompt_ids`: the prompt followed by up to max_new_tokens new ids."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        ids = [int(i) for i in prompt_ids]
        if not ids:
            raise InputError("the prompt has no tokens; pass a non-empty text (or add_special_tokens=True)")
        limit = self.tokenizer.max_length
        if len(ids) + max_new_tokens > limit:
            room = limit - len(ids)
            fix = f"use max_new_tokens <= {room}" if room >= 1 else "shorten the prompt"
            raise InputError(
                f"prompt of {len(ids)} tokens + max_new_tokens {max_new_tokens} exceeds the model's max length "
                f"{limit}; {fix}"
            )
        if use_cache is None:
            use_cache = self.has_cache_graph
        if use_cache and not self.has_cache_graph:
            raise InputError(
                f"use_cache=True needs the KV-cache graph, which {str(self.artifact.path)!r} lacks; re-export "
                "with --with-past or pass use_cache=False"
            )
        step = self._cached if use_cache else self._uncached
        return step(ids, int(max_new_tokens))

    # ---- decoding loops ----

    def _uncached(self, ids: list[int], max_new_tokens: int) -> list[int]:
        sequence = list(ids)
        for _ in range(max_new_tokens):
            row = np.asarray([sequence], dtype=np.int64)
            feed = self._base_feed(row, np.ones_like(row))
            token = int(np.argmax(self.session.run(feed)["logits"][0, -1]))
            sequence.append(token)
            if token in self.eos_ids:
                break
        return sequence

    def _cached(self, ids: list[int], max_new_tokens: int) -> list[int]:
        spec = self.with_past
        assert spec is not None
        session = self._cache_session()
        layers, heads, head_dim = spec.num_layers, spec.num_heads, spec.head_dim
        dtypes = {value.name: np.dtype(value.dtype) for value in spec.inputs}
        past_names = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        present_names = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        past = [np.zeros((1, heads, 0, head_dim), dtype=dtypes[name]) for name in past_names]
        rule = spec.positions
        sequence = list(ids)
        new = np.asarray([sequence], dtype=np.int64)
        for _ in range(max_new_tokens):
            whole = np.asarray([sequence], dtype=np.int64)
            feed = self._base_feed(new, np.ones_like(whole))
            feed["position_ids"] = positions(whole, first=rule.first, pad_id=rule.pad_id)[:, -new.shape[1]:]
            feed.update(zip(past_names, past))
            outputs = session.run(feed)
            past = [outputs[name] for name in present_names]
            token = int(np.argmax(outputs["logits"][0, -1]))
            sequence.append(token)
            if token in self.eos_ids:
                break
            new = np.asarray([[token]], dtype=np.int64)
        return sequence

    def _base_feed(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.tokenizer.feeds:
            feed["token_type_ids"] = np.zeros_like(ids)
        return feed

    def _cache_session(self) -> Session:
        with self._past_lock:
            return self._load_cache_session()

    def _load_cache_session(self) -> Session:
        if self._past_session is None:
            assert self.with_past is not None
            graph = self.with_past.model_file
            # The cache graph runs on the same engine and device (a TensorRT engine covers model.onnx only:
            # there it runs on onnxruntime-cuda).
            same = self.session.backend.startswith("onnxruntime") or self.session.backend == "openvino"
            backend = self.session.backend if same else "onnxruntime-cuda"
            self._past_session = get_backend(backend).load(self.artifact, graph=graph)
            log.info("loaded the KV-cache graph %s on %s", self.artifact.path / graph, backend)
        return self._past_session


PIPELINES.register("text-generation", TextGenerationPipeline)

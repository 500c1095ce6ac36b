"""Span scoring and decoding for extractive QA, numerically the same as transformers 4.57's
QuestionAnsweringPipeline (fast-tokenizer path), written for numpy only.

Per chunk: logits of tokens that cannot answer (question, special tokens except CLS, padding) are set to
-10000 and softmaxed over the chunk (CLS stays in the softmax); the CLS probability product is the null score;
CLS is then zeroed and span scores are the outer product p_start x p_end restricted to end >= start and
end - start < max_answer_len. The best spans are picked with the same numpy selection calls as 4.57 so that
exact ties (zero-score spans on short contexts) resolve identically. Spans map back to characters of the
context through the tokenizers Encoding (whole words with `align_to_words`), equal answers (case-insensitive)
add their scores across spans and chunks, and the null answer joins the ranking when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding

MASKED_LOGIT = -10000.0
NULL_SCORE_START = 1000000.0  # "large and positive", as 4.57 starts min_null_score


@dataclass(frozen=True)
class SpanOptions:
    top_k: int = 1
    max_answer_len: int = 15
    handle_impossible_answer: bool = False
    align_to_words: bool = True


def allowed_tokens(encoding: Encoding, cls_token_id: int | None, context_sequence: int = 1) -> np.ndarray:
    """1 for tokens that may start or end an answer: the context's tokens, and CLS (kept for the null answer)."""
    allowed = np.array([sid == context_sequence for sid in encoding.sequence_ids], dtype=np.int64)
    if cls_token_id is not None:
        allowed[np.asarray(encoding.ids) == cls_token_id] = 1
    return allowed


def _probabilities(logits: np.ndarray, masked: np.ndarray) -> np.ndarray:
    values = np.where(masked, MASKED_LOGIT, logits[None, :])
    values = np.exp(values - values.max(axis=-1, keepdims=True))
    return values / values.sum()  # type: ignore[no-any-return]


def best_spans(
    start_logits: np.ndarray, end_logits: np.ndarray, allowed: np.ndarray, *, top: int, max_answer_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(starts, ends, scores, null_score) of the `top` best spans of one chunk, best first, where `allowed`
    marks the tokens that may bound an answer. Spans touching a disallowed token are dropped after selection."""
    masked = (allowed == 0)[None, :]
    start = _probabilities(start_logits, masked)
    end = _probabilities(end_logits, masked)
    null_score = float((start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    outer = np.matmul(start[:, :, None], end[:, None, :])
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.ravel()
    if top == 1:
        order = np.array([np.argmax(flat)])
    elif flat.size <= top:
        order = np.argsort(-flat)
    else:
        picked = np.argpartition(-flat, top)[:top]
        order = picked[np.argsort(-flat[picked])]
    starts, ends = np.unravel_index(order, candidates.shape)[1:]
    # 4.57 tests membership against nonzero() of a (1, L) mask, whose row indices add position 0
    usable = np.union1d(np.flatnonzero(allowed), [0])
    keep = np.isin(starts, usable) & np.isin(ends, usable)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends], null_score


def char_span(encoding: Encoding, start: int, end: int, *, align_to_words: bool,
              context_sequence: int = 1) -> tuple[int, int]:
    """Character [start, end) in the context of the token span; whole words when `align_to_words`.
    Tokens without a word (CLS) fall back to their own offsets, as 4.57 does."""
    if align_to_words:
        first_word, last_word = encoding.token_to_word(start), encoding.token_to_word(end)
        if first_word is not None and last_word is not None:  # None: a special token (CLS), no word
            first = encoding.word_to_chars(first_word, sequence_index=context_sequence)
            last = encoding.word_to_chars(last_word, sequence_index=context_sequence)
            if first is not None and last is not None:
                return int(first[0]), int(last[1])
    return int(encoding.offsets[start][0]), int(encoding.offsets[end][1])


def decode_answers(
    context: str,
    chunks: list[tuple[Encoding, np.ndarray, np.ndarray, np.ndarray]],
    options: SpanOptions,
) -> dict[str, object] | list[dict[str, object]]:
    """The pipeline result for one question: chunks are (encoding, start_logits, end_logits, allowed).
    A single answer comes back as a dict, otherwise a list of up to top_k dicts, best first (as 4.57)."""
    top = options.top_k * 2 + 10 if options.align_to_words else options.top_k  # alignment may merge spans
    null_score = NULL_SCORE_START
    answers: list[dict[str, object]] = []
    by_text: dict[str, dict[str, object]] = {}
    for encoding, start_logits, end_logits, allowed in chunks:
        starts, ends, scores, chunk_null = best_spans(
            start_logits, end_logits, allowed, top=top, max_answer_len=options.max_answer_len
        )
        if options.handle_impossible_answer:
            null_score = min(null_score, chunk_null)
        for s, e, score in zip(starts.tolist(), ends.tolist(), scores.tolist()):
            begin, finish = char_span(encoding, s, e, align_to_words=options.align_to_words)
            text = context[begin:finish]
            same = by_text.get(text.lower())
            if same is not None:
                same["score"] = float(same["score"]) + score  # type: ignore[arg-type]
                continue
            answer: dict[str, object] = {"score": score, "start": begin, "end": finish, "answer": text}
            answers.append(answer)
            by_text[text.lower()] = answer
    if options.handle_impossible_answer:
        answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda a: a["score"], reverse=True)[: options.top_k]  # type: ignore[arg-type,return-value]
    return answers[0] if len(answers) == 1 else answers

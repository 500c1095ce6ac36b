"""question-answering: extractive QA, output for output like transformers 4.57's QuestionAnsweringPipeline
(transformers 5 removed that pipeline; tests/data/qa_reference holds 4.57's outputs and the script that made them).

    qa = load("out/roberta-qa")
    qa(question="Who wrote it?", context=text)               # {'score', 'start', 'end', 'answer'}
    qa(question="Who?", context=text, top_k=3)               # up to 3 dicts, best first
    qa([{"question": q1, "context": c1}, {"question": q2, "context": c2}])   # one result per pair
    qa(question=[q1, q2], context=[c1, c2])                  # same; context may also be one str for all

Options, with 4.57's defaults: top_k=1, doc_stride=min(max_seq_len // 2, 128), max_answer_len=15,
max_seq_len=min(384, the artifact's max length), max_question_len=64, handle_impossible_answer=False,
align_to_words=True; batch_size (chunks per model call) is ours. As in 4.57, one question gives one result (a
dict, or a list when several answers are asked for and found); several questions give a list of results.
`start`/`end` are character offsets into the original context, `answer` is context[start:end].

Long contexts are split with the tokenizer's "only_second" truncation and `doc_stride` tokens of overlap; the
best spans of all chunks compete. Where 4.57 gives up (its tokenizer raises when the question leaves no room
for at least doc_stride + 1 context tokens), the question is cut to `max_question_len` tokens first, and only
if that is not enough is it an InputError. As in 4.57 with a fast tokenizer, `max_question_len` has no other
effect. Bad input (missing, None, non-str, empty or whitespace-only question or context, bad options) is an
InputError naming the value and the fix.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Encoding

from encoderforge.artifact import Artifact
from encoderforge.errors import InputError
from encoderforge.runtime.backends import Session
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import Pipeline, TaskContract, check_text
from encoderforge.runtime.pipelines.qa_spans import SpanOptions, allowed_tokens, decode_answers

DEFAULT_MAX_SEQ_LEN = 384
DEFAULT_MAX_STRIDE = 128
_PROBE_CHARS = 2000  # enough of a context to see that it has tokens, without tokenizing all of it


def _examples(args: tuple[Any, ...], question: Any, context: Any) -> list[tuple[str, str]]:
    """(question, context) pairs from the call forms 4.57 accepts; InputError for anything else."""
    if args and (question is not None or context is not None):
        raise InputError("pass the inputs once: either positionally or as question=/context=, not both")
    if len(args) == 2 and all(isinstance(a, str) for a in args):
        question, context = args
        args = ()
    if args:
        items = args[0] if len(args) == 1 else list(args)
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, (list, tuple)) or not items:
            raise InputError(
                f"inputs is {type(items).__name__} {items!r:.60}; pass question=..., context=... or a non-empty "
                "list of {'question': str, 'context': str}"
            )
        pairs = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InputError(f"inputs[{index}] is {type(item).__name__} {item!r:.60}; each input must be a "
                                 "dict {'question': str, 'context': str}")
            for key in ("question", "context"):
                if key not in item:
                    raise InputError(f"inputs[{index}] has no {key!r}; each input must be a dict "
                                     "{'question': str, 'context': str}")
            pairs.append((check_text(item["question"], f"inputs[{index}]['question']"),
                          check_text(item["context"], f"inputs[{index}]['context']")))
        return pairs
    if question is None or context is None:
        missing = "context" if question is not None else "question" if context is not None else "question and context"
        raise InputError(f"missing {missing}: question-answering needs question='...' and context='...'")
    if isinstance(question, (list, tuple)):
        contexts = [context] * len(question) if isinstance(context, str) else context
        if not isinstance(contexts, (list, tuple)) or len(contexts) != len(question) or not question:
            raise InputError(
                f"got {len(question)} questions and {len(contexts) if isinstance(contexts, (list, tuple)) else 1} "
                "contexts; pass one context for all questions or exactly one per question"
            )
        return [(check_text(q, f"question[{i}]"), check_text(c, f"context[{i}]"))
                for i, (q, c) in enumerate(zip(question, contexts))]
    if isinstance(context, (list, tuple)):
        raise InputError("context is a list but question is not; pass a list of questions of the same length")
    return [(check_text(question, "question"), check_text(context, "context"))]


def _positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class QuestionAnsweringPipeline(Pipeline):
    task = "question-answering"
    contract = TaskContract(request_fields=("question", "context"), rows_batch=True,
                            unwraps_single=True)

    def __init__(self, artifact: Artifact, session: Session) -> None:
        if artifact.task != self.task:
            raise InputError(
                f"artifact {str(artifact.path)!r} is a {artifact.task!r} model, not question-answering; "
                "export a QA head (encoderforge export --task qa) or use the artifact's own task"
            )
        super().__init__(artifact, session)
        settings = artifact.manifest.tokenizer
        self.cls_token_id: int | None = settings.cls_token_id
        pair = settings.num_special_tokens_pair
        self.pair_specials = pair if pair is not None else int(self.tokenizer.tokenizer.num_special_tokens_to_add(True))

    def __call__(
        self,
        *args: Any,
        question: Any = None,
        context: Any = None,
        top_k: int = 1,
        doc_stride: int | None = None,
        max_answer_len: int = 15,
        max_seq_len: int | None = None,
        max_question_len: int = 64,
        handle_impossible_answer: bool = False,
        align_to_words: bool = True,
        batch_size: int = 32,
    ) -> Any:
        pairs = _examples(args, question, context)
        options = SpanOptions(top_k=_positive_int(top_k, "top_k"),
                              max_answer_len=_positive_int(max_answer_len, "max_answer_len"),
                              handle_impossible_answer=bool(handle_impossible_answer),
                              align_to_words=bool(align_to_words))
        limit = self.artifact.max_length
        if max_seq_len is None:
            max_seq_len = min(DEFAULT_MAX_SEQ_LEN, limit)
        max_seq_len = _positive_int(max_seq_len, "max_seq_len", minimum=self.pair_specials + 2)
        if max_seq_len > limit:
            raise InputError(f"max_seq_len={max_seq_len} is more than the model's max length {limit}; "
                             f"pass max_seq_len <= {limit}")
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, DEFAULT_MAX_STRIDE)
        doc_stride = _positive_int(doc_stride, "doc_stride", minimum=0)
        if doc_stride > max_seq_len:
            raise InputError(f"doc_stride={doc_stride} is larger than max_seq_len={max_seq_len}; lower doc_stride")
        max_question_len = _positive_int(max_question_len, "max_question_len")
        batch_size = _positive_int(batch_size, "batch_size")

        self.tokenizer.check(pairs)  # the size cap, before any tokenization
        pairs = [self._fit_question(q, c, max_seq_len, doc_stride, max_question_len) for q, c in pairs]
        encoded = self.tokenizer.encode(pairs, max_length=max_seq_len, truncation="only_second", stride=doc_stride)
        chunks: list[list[Encoding]] = [[e, *e.overflowing] for e in encoded]
        flat = [chunk for example in chunks for chunk in example]
        outputs = iter(self.forward(flat, batch_size=batch_size))
        results = []
        for (_, text), example in zip(pairs, chunks):
            scored = []
            for encoding in example:
                out = next(outputs)
                scored.append((encoding, out["start_logits"], out["end_logits"],
                               allowed_tokens(encoding, self.cls_token_id)))
            results.append(decode_answers(text, scored, options))
        return results[0] if len(results) == 1 else results

    def _fit_question(self, question: str, context: str, max_seq_len: int, stride: int,
                      max_question_len: int) -> tuple[str, str]:
        """The pair to encode. The tokenizer cannot split the context when the question leaves it fewer than
        stride + 1 tokens per chunk (tokenizers panics): cut the question to max_question_len tokens then,
        and raise InputError if even that does not leave room."""
        tokenizer = self.tokenizer.tokenizer
        head = tokenizer.encode(context[:_PROBE_CHARS], add_special_tokens=False).ids  # not the whole context
        if not head and (len(context) <= _PROBE_CHARS or not tokenizer.encode(context, add_special_tokens=False).ids):
            raise InputError(f"context {context!r:.40} has no tokens for this tokenizer; pass text to search")
        asked = tokenizer.encode(question, add_special_tokens=False)
        room = max_seq_len - self.pair_specials - len(asked.ids)
        if room > stride:
            return question, context
        context_tokens = len(tokenizer.encode(context, add_special_tokens=False).ids)
        if room >= context_tokens:
            return question, context
        if len(asked.ids) > max_question_len:
            cut = question[: asked.offsets[max_question_len - 1][1]]
            short = len(tokenizer.encode(cut, add_special_tokens=False).ids)
            room = max_seq_len - self.pair_specials - short
            if room >= context_tokens or room > stride:
                return cut, context
        raise InputError(
            f"question {question!r:.40} has {len(asked.ids)} tokens: with max_seq_len={max_seq_len} and "
            f"doc_stride={stride} each chunk needs more than {stride} context tokens; shorten the question "
            "(or max_question_len), lower doc_stride or raise max_seq_len"
        )


PIPELINES.register("question-answering", QuestionAnsweringPipeline)

"""question-answering pipeline: output for output equal to transformers 4.57's QuestionAnsweringPipeline.

The expected outputs and the chunks 4.57 fed its model were produced by tests/reference/make_qa_reference.py
in a transformers 4.57 venv (transformers 5 has no QA pipeline) on the committed tiny checkpoints; here each
checkpoint is exported with encoderforge and run through our torch-free pipeline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from encoderforge.errors import InputError

DATA = Path(__file__).parent / "data" / "qa_reference"
FAMILIES = sorted(p.name for p in DATA.iterdir() if (p / "expected.json").is_file()) if DATA.is_dir() else []
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def qa_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from encoderforge.exporters import ExportConfig, export
    from encoderforge.runtime import load

    root = tmp_path_factory.mktemp("qa-reference")
    cache: dict[str, Any] = {}

    def build(family: str) -> Any:
        if family not in cache:
            artifact = export(ExportConfig(model=str(DATA / family), task="qa", output=root / family))
            cache[family] = load(artifact.path, device="cpu")
        return cache[family]

    return build


def _expected(family: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / family / "expected.json").read_text(encoding="utf-8"))
    return data


def _call(qa: Any, call: dict[str, Any]) -> Any:
    call = dict(call)
    return qa(call.pop("inputs"), **call) if "inputs" in call else qa(**call)


def _assert_same(got: Any, want: Any, where: str) -> None:
    assert type(got) is type(want), f"{where}: got {type(got).__name__}, want {type(want).__name__}"
    if isinstance(want, list):
        assert len(got) == len(want), f"{where}: {len(got)} results, want {len(want)}: {got} vs {want}"
        for index, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{index}]")
        return
    assert (got["answer"], got["start"], got["end"]) == (want["answer"], want["start"], want["end"]), \
        f"{where}: got {got}, want {want}"
    assert abs(got["score"] - want["score"]) <= SCORE_TOLERANCE, f"{where}: score {got['score']} vs {want['score']}"


def test_reference_data_present() -> None:
    assert set(FAMILIES) == {"bert", "camembert", "convbert", "rembert", "roberta"}, FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_transformers_457(family: str, qa_pipeline: Any) -> None:
    qa = qa_pipeline(family)
    expected = _expected(family)
    assert expected["versions"]["transformers"].startswith("4.57")
    for case in expected["cases"]:
        _assert_same(_call(qa, case["call"]), case["expected"], f"{family}/{case['name']}")


@pytest.mark.parametrize("family", FAMILIES)
def test_chunks_equal_457_tokenization(family: str, qa_pipeline: Any) -> None:
    """The windows (question + context slice, doc_stride overlap) are token for token 4.57's."""
    qa = qa_pipeline(family)
    for case in _expected(family)["cases"]:
        call = dict(case["call"])
        items = call.pop("inputs", None)
        if items is None:
            questions = call["question"] if isinstance(call["question"], list) else [call["question"]]
            contexts = call["context"] if isinstance(call["context"], list) else [call["context"]] * len(questions)
            items = [{"question": q, "context": c} for q, c in zip(questions, contexts)]
        max_seq_len = call.get("max_seq_len", min(384, qa.artifact.max_length))
        stride = call.get("doc_stride", min(max_seq_len // 2, 128))
        encoded = qa.tokenizer.encode([(i["question"], i["context"]) for i in items], max_length=max_seq_len,
                                      truncation="only_second", stride=stride)
        ids = [list(chunk.ids) for e in encoded for chunk in [e, *e.overflowing]]
        assert ids == case["chunks"], f"{family}/{case['name']}: chunks differ from 4.57's"


@pytest.fixture(scope="module")
def roberta_qa(qa_pipeline: Any) -> Any:
    return qa_pipeline("roberta")


CONTEXT = "Herman Melville wrote Moby-Dick in 1851, a novel about the white whale."


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"question": "Who?"}, "missing context"),
        ({"context": CONTEXT}, "missing question"),
        ({}, "missing question and context"),
        ({"question": "Who?", "context": None}, "missing context"),
        ({"question": None, "context": CONTEXT}, "missing question"),
        ({"question": "Who?", "context": ""}, "context is empty"),
        ({"question": "   ", "context": CONTEXT}, "question is empty"),
        ({"question": "Who?", "context": " \n\t "}, "context is empty"),
        ({"question": 42, "context": CONTEXT}, "question is int"),
        ({"question": "Who?", "context": b"bytes"}, "context is bytes"),
        ({"question": ["a", "b"], "context": ["c"]}, "2 questions and 1 contexts"),
        ({"question": "Who?", "context": ["a", "b"]}, "context is a list"),
        ({"question": ["a", None], "context": CONTEXT}, "question[1] is None"),
        ({"question": "Who?", "context": CONTEXT, "top_k": 0}, "top_k must be an int >= 1"),
        ({"question": "Who?", "context": CONTEXT, "max_answer_len": 0}, "max_answer_len must be"),
        ({"question": "Who?", "context": CONTEXT, "max_seq_len": 10_000}, "more than the model's max length"),
        ({"question": "Who?", "context": CONTEXT, "max_seq_len": 40, "doc_stride": 41}, "larger than max_seq_len"),
        ({"question": "Who?", "context": CONTEXT, "doc_stride": -1}, "doc_stride must be"),
    ],
)
def test_bad_input_is_a_clear_error(roberta_qa: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        roberta_qa(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "non-empty list"),
        (["just a string"], r"inputs\[0\] is str"),
        ([{"question": "Who?"}], r"inputs\[0\] has no 'context'"),
        ([{"question": "Who?", "context": CONTEXT}, {"question": "", "context": CONTEXT}], r"inputs\[1\]\['question'\]"),
        (42, "inputs is int"),
    ],
)
def test_bad_positional_inputs(roberta_qa: Any, inputs: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        roberta_qa(inputs)


def test_call_forms_agree(roberta_qa: Any) -> None:
    one = roberta_qa(question="Who wrote it?", context=CONTEXT)
    assert set(one) == {"score", "start", "end", "answer"}
    assert one["answer"] == CONTEXT[one["start"]:one["end"]]
    assert roberta_qa("Who wrote it?", CONTEXT) == one
    assert roberta_qa({"question": "Who wrote it?", "context": CONTEXT}) == one
    assert roberta_qa([{"question": "Who wrote it?", "context": CONTEXT}]) == one
    two = roberta_qa(question=["Who wrote it?", "When?"], context=CONTEXT)
    assert isinstance(two, list) and len(two) == 2 and two[0] == one
    assert roberta_qa(question=["Who wrote it?", "When?"], context=[CONTEXT, CONTEXT]) == two
    assert roberta_qa({"question": "Who wrote it?", "context": CONTEXT}, {"question": "When?", "context": CONTEXT}) == two


def test_question_too_long_for_the_window(roberta_qa: Any) -> None:
    """4.57's tokenizer panics here; we cut the question to max_question_len tokens, else say what to change."""
    question = " ".join(["which river flooded the valley"] * 12)
    context = " ".join(["The river flooded the valley in the spring of 1824."] * 8)
    answer = roberta_qa(question=question, context=context, max_question_len=16)
    assert answer["answer"] == context[answer["start"]:answer["end"]]
    with pytest.raises(InputError, match="shorten the question"):
        roberta_qa(question=question, context=context, max_question_len=60)


def test_context_shorter_than_question_and_one_token(roberta_qa: Any) -> None:
    result = roberta_qa(question="Which city in France holds the museum of silk weaving looms?", context="Lyon",
                        top_k=3, handle_impossible_answer=True)
    answers = result if isinstance(result, list) else [result]
    assert {a["answer"] for a in answers} <= {"Lyon", ""}


def test_wrong_artifact_task(artifact: Any) -> None:
    from encoderforge.runtime.backends import get_backend
    from encoderforge.runtime.pipelines.question_answering import QuestionAnsweringPipeline

    other = artifact("bert", "text-classification")
    session = get_backend("onnxruntime-cpu").load(other)
    with pytest.raises(InputError, match="not question-answering"):
        QuestionAnsweringPipeline(other, session)


def test_long_context_many_chunks_batched_equals_unbatched(roberta_qa: Any) -> None:
    context = " ".join(_expected("roberta")["cases"][1]["call"]["context"] for _ in range(3))
    batched = roberta_qa(question="When was the mill rebuilt?", context=context, top_k=3, batch_size=64)
    single = roberta_qa(question="When was the mill rebuilt?", context=context, top_k=3, batch_size=1)
    _assert_same(batched, single, "batched")

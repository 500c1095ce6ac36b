"""One task contract per runtime pipeline: every task head has a pipeline, and serving, bench and `run`
derive what they need from its declared contract."""

from __future__ import annotations

import inspect

import pytest

from encoderforge.errors import UnsupportedError
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import TaskContract
from encoderforge.serving.tasks import TASK_IO, task_io
from encoderforge.tasks import TASKS


def test_every_task_has_a_pipeline_and_every_pipeline_a_task() -> None:
    assert set(PIPELINES) == set(TASKS)
    for name, pipeline in PIPELINES.items():
        assert pipeline.task == name
        assert isinstance(pipeline.contract, TaskContract)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_request_fields_are_what_the_pipeline_takes(task: str) -> None:
    pipeline = PIPELINES.get(task)
    contract = pipeline.contract
    call = pipeline.encode if contract.result == "embedding" else pipeline.__call__
    params = inspect.signature(call).parameters
    keywords = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    assert set(contract.request_fields) <= keywords, (task, sorted(keywords))
    assert contract.request_fields and len(set(contract.request_fields)) == len(contract.request_fields)


def test_serving_derives_from_the_contracts() -> None:
    served = {task for task, pipeline in PIPELINES.items() if pipeline.contract.served}
    assert set(TASK_IO) == served and "question-answering" in served and "multiple-choice" not in served
    for task in served:
        io, contract = task_io(task), PIPELINES.get(task).contract
        assert io.inputs == contract.request_fields
        assert [o.name for o in io.outputs] == (["embedding"] if contract.result == "embedding" else ["result"])
    with pytest.raises(UnsupportedError, match="task 'multiple-choice' cannot be served; servable tasks: "):
        task_io("multiple-choice")


def test_many_requests_in_one_call() -> None:
    one = TaskContract(request_fields=("text",), rows_batch=True)
    assert one.many(["a", "b"]) == ((["a", "b"],), {})
    pairs = TaskContract(request_fields=("question", "context"), rows_batch=True)
    assert pairs.many([("q1", "c1"), ("q2", "c2")]) == ((), {"question": ["q1", "q2"], "context": ["c1", "c2"]})
    dicts = TaskContract(request_fields=("prompt", "choices"), rows_batch=False, many_as_dicts=True)
    assert dicts.many([("p", ["x", "y"])]) == (([{"prompt": "p", "choices": ["x", "y"]}],), {})

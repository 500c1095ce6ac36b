"""Peers measured beside our artifacts in the same run, on the same inputs.

- torch: PyTorch eager of the source checkpoint (model-only: the same int64 feeds as tensors; end-to-end:
  transformers.pipeline with the checkpoint's own tokenizer).
- sentence-transformers: `SentenceTransformer.encode` for embedding models (end-to-end only).
- optimum: optimum-onnx's ORTModel, in its own interpreter (it pins transformers < 4.58), see optimum_peer.py.
- ort-baseline: a plain onnxruntime session of the standard export (engines.py).
- openvino, openvino-nncf-int8: OpenVINO's CPU plugin on the standard export, and nncf's int8 of it
  (openvino_peers.py).

A peer whose package is missing is skipped with the reason, never a crash.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from encoderforge.bench.engines import Call, Engine, Feed, Group, Mode, Skip
from encoderforge.runtime.pipelines import PIPELINES
from encoderforge.runtime.pipelines.base import TaskContract
from encoderforge.sample_inputs import PointInputs
from encoderforge.tasks import task_head

# transformers.pipeline has no end-to-end counterpart for these heads (multiple choice has no pipeline;
# text-generation would generate tokens instead of scoring them).
_NO_TRANSFORMERS_PIPELINE = {"multiple-choice", "text-generation"}


def require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{module} is not installed ({install})")


def _require_source(group: Group) -> str:
    if group.source is None:
        raise Skip("the artifact's manifest 'source' is not a checkpoint directory on this machine")
    return str(group.source)


class TorchEngine(Engine):
    def __init__(self, group: Group) -> None:
        super().__init__("torch", "peer", group, "PyTorch eager (transformers) of the source checkpoint, fp32")
        self.model: Any = None
        self.pipeline: Any = None

    def load(self, threads: int) -> None:
        require("torch", "pip install 'encoderforge[export]'")
        require("transformers", "pip install 'encoderforge[export]'")
        source = _require_source(self.group)
        import torch
        import transformers

        torch.set_num_threads(threads)
        transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        head = task_head(self.group.task)
        self.model = getattr(transformers, head.auto_class).from_pretrained(source).eval()
        self.info.update(torch=torch.__version__, transformers=transformers.__version__, threads=threads)
        if head.name not in _NO_TRANSFORMERS_PIPELINE and _contract(head.name).result != "embedding":
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            if head.name == "question-answering":  # transformers 5 removed this pipeline: the hand-written loop
                self.pipeline = _ManualQA(self.model, tokenizer)
                self.description += "; end-to-end QA by hand (transformers 5 has no QA pipeline): tokenize, " \
                                    "forward, argmax start/end, decode"
            else:
                make: Any = transformers.pipeline
                self.pipeline = make(head.name, model=self.model, tokenizer=tokenizer, device="cpu")

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        import torch

        model = self.model
        if mode == "model":
            tensors = {name: torch.from_numpy(array) for name, array in inputs.feed.items()}

            def forward() -> object:
                with torch.inference_mode():
                    return model(**tensors)

            return forward
        if _contract(self.group.task).result == "embedding":
            raise Skip("for embeddings the end-to-end peer is sentence-transformers (--compare sentence-transformers)")
        if self.pipeline is None:
            raise Skip(f"transformers has no comparable end-to-end pipeline for {self.group.task!r}")
        return _transformers_pipeline_call(self.pipeline, _contract(self.group.task), inputs)

    def outputs(self, feed: Feed) -> dict[str, np.ndarray]:
        """The graph's outputs, by name, from the model's output (the graph was traced from the same class)."""
        import torch

        if self.model is None:
            raise Skip("model not loaded")
        with torch.inference_mode():
            out = self.model(**{name: torch.from_numpy(array) for name, array in feed.items()})
        names = [spec.name for spec in self.group.artifacts[0].manifest.outputs]
        missing = [name for name in names if name not in out]
        if missing:
            raise Skip(f"the torch model's output has no {missing[0]!r} (it has {list(out.keys())})")
        return {name: out[name].float().numpy() for name in names}

    def close(self) -> None:
        self.model = self.pipeline = None


class _ManualQA:
    """What a transformers 5 user writes for extractive QA: batched tokenization, one forward, the argmax
    start and end per row, and the decoded span (simpler, so cheaper, than a full span search)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, *, question: list[str], context: list[str], batch_size: int) -> list[str]:
        import torch

        answers = []
        for start in range(0, len(question), batch_size):
            enc = self.tokenizer(question[start:start + batch_size], context[start:start + batch_size],
                                 truncation="only_second", padding=True, return_tensors="pt")
            with torch.inference_mode():
                out = self.model(**enc)
            first, last = out.start_logits.argmax(-1), out.end_logits.argmax(-1)
            for row in range(len(first)):
                ids = enc["input_ids"][row, int(first[row]): max(int(first[row]), int(last[row])) + 1]
                answers.append(self.tokenizer.decode(ids, skip_special_tokens=True))
        return answers


def _contract(task: str) -> TaskContract:
    return PIPELINES.get(task_head(task).name).contract


def _transformers_pipeline_call(pipeline: Any, contract: TaskContract, inputs: PointInputs) -> Call:
    """transformers' pipelines are asked like ours: the texts, or one list per request field (QA)."""
    args, fields = contract.many(inputs.texts)
    batch = inputs.batch_size
    return lambda: pipeline(*args, **fields, batch_size=batch)


class SentenceTransformersEngine(Engine):
    def __init__(self, group: Group) -> None:
        super().__init__("sentence-transformers", "peer", group, "SentenceTransformer.encode (PyTorch), fp32")
        self.model: Any = None

    def load(self, threads: int) -> None:
        if _contract(self.group.task).result != "embedding":
            raise Skip(f"sentence-transformers only applies to embedding models, not {self.group.task!r}")
        require("sentence_transformers", "pip install sentence-transformers")
        source = _require_source(self.group)
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.model = SentenceTransformer(source, device="cpu")
        import sentence_transformers

        self.info.update(version=sentence_transformers.__version__, threads=threads)

    def call(self, mode: Mode, inputs: PointInputs) -> Call:
        if mode == "model":
            raise Skip("sentence-transformers is measured end-to-end only (its model-only path is the torch peer)")
        model, texts, batch = self.model, inputs.texts, inputs.batch_size
        return lambda: model.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)

    def close(self) -> None:
        self.model = None

"""Runtime pipelines vs transformers.pipeline on the same tiny checkpoints: same structure, same labels / tokens /
spans, scores within 1e-4. Plus multiple-choice vs the torch model's softmax, and the bad-input contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoderforge.artifact import Artifact
from encoderforge.errors import EncoderForgeError, InputError, UnsupportedError
from encoderforge.runtime import load
from tests.conftest import FAMILY_HEADS

ATOL = 1e-4

TEXTS = [
    "Emmanuel Macron vit à Paris et travaille au palais de l'Élysée.",
    "Crème brûlée, œuf à la coque, naïve façade.",
    "The party was great 🎉 and everyone loved the cake 🍰.",
    "東京は日本の首都です。",
    "Yes.",
    "Marie Curie was the first person to win Nobel prizes in two sciences.",
    "Call +1 (555) 010-2030 or write to support@example.org",
    "Mixed CaSe TeXt and   irregular   spacing\tas well.",
]
PAIRS = [
    {"text": "Who wrote the novel?", "text_pair": "Herman Melville wrote Moby-Dick in 1851."},
    {"text": "Où est la gare ?", "text_pair": "Elle est à deux rues d'ici 🚉."},
]


def heads(task: str) -> list[str]:
    return [family for family, head in FAMILY_HEADS if head == task]


def close(ours: Any, theirs: Any, path: str = "") -> None:
    """Same structure and keys, equal strings / ints, floats within ATOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), f"{path}: keys {sorted(ours)} != {sorted(theirs)}"
        for key in theirs:
            close(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), f"{path}: {ours!r:.200} != {theirs!r:.200}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            close(a, b, f"{path}[{i}]")
    elif isinstance(theirs, (float, np.floating)):
        assert abs(float(ours) - float(theirs)) <= ATOL, f"{path}: {ours} != {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


@pytest.fixture(scope="module")
def reference() -> Callable[..., Any]:
    """reference(task, checkpoint, artifact) -> transformers.pipeline on the checkpoint (cached)."""
    import transformers

    cache: dict[tuple[str, Path], Any] = {}

    def build(task: str, checkpoint: Path, artifact: Artifact) -> Any:
        key = (task, checkpoint)
        if key not in cache:
            # The artifact's tokenizer.json is the one the exporter validated (it repairs e.g. RemBERT's
            # special-token template lost by transformers' SentencePiece conversion); the model is the checkpoint.
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(artifact.path))
            cache[key] = transformers.pipeline(task, model=str(checkpoint), tokenizer=tokenizer, device="cpu")
        return cache[key]

    return build


def pair(task: str, family: str, artifact: Callable[..., Artifact], checkpoint: Callable[..., Path],
         reference: Callable[..., Any]) -> tuple[Any, Any, Artifact]:
    art = artifact(family, task)
    return load(art.path, device="cpu"), reference(task, checkpoint(family, task), art), art


def fitting(pipe: Any, texts: list[str], room: int = 0) -> list[str]:
    """The texts that fit the tiny model without truncation (transformers would fail on longer ones)."""
    return [t for t in texts if len(pipe.tokenizer.encode([t])[0].ids) + room <= pipe.tokenizer.max_length]


# ---------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("family", heads("text-classification"))
def test_text_classification_parity(family: str, artifact: Any, checkpoint: Any, reference: Any) -> None:
    ours, theirs, _ = pair("text-classification", family, artifact, checkpoint, reference)
    texts = fitting(ours, TEXTS)
    close(ours(texts[0]), theirs(texts[0]))  # legacy: [{'label', 'score'}]
    close(ours(texts, batch_size=3), theirs(texts))  # batched with padding, order restored
    close(ours(texts[1], top_k=None), theirs(texts[1], top_k=None))
    close(ours(texts[:3], top_k=2), theirs(texts[:3], top_k=2))
    close(ours(texts[2], top_k=1, function_to_apply="sigmoid"), theirs(texts[2], top_k=1, function_to_apply="sigmoid"))
    close(ours(texts[3], function_to_apply="none"), theirs(texts[3], function_to_apply="none"))
    close(ours(PAIRS[0]), theirs(PAIRS[0]))
    close(ours(PAIRS, top_k=None), theirs(PAIRS, top_k=None))
    close(ours(text=PAIRS[1]["text"], text_pair=PAIRS[1]["text_pair"]), theirs(PAIRS[1]))


def test_text_classification_problem_type(tmp_path: Path, artifact: Any) -> None:
    """sigmoid for multi-label / one label, none for regression, as transformers decides from config.json."""
    from encoderforge.runtime.pipelines.text_classification import TextClassificationPipeline

    pipe = load(artifact("bert", "text-classification").path, device="cpu")
    assert isinstance(pipe, TextClassificationPipeline) and pipe.default_function() == "softmax"
    for problem, expected in [("multi_label_classification", "sigmoid"), ("regression", "none")]:
        pipe.config["problem_type"] = problem
        assert pipe.default_function() == expected
    pipe.config["problem_type"] = "multi_label_classification"
    logits = {r["label"]: r["score"] for r in pipe("a short text", top_k=None, function_to_apply="none")}
    for r in pipe("a short text", top_k=None):  # independent sigmoids of the logits
        assert abs(r["score"] - 1 / (1 + np.exp(-logits[r["label"]]))) < 1e-6


@pytest.mark.parametrize("family", heads("token-classification"))
def test_token_classification_parity(family: str, artifact: Any, checkpoint: Any, reference: Any) -> None:
    ours, theirs, _ = pair("token-classification", family, artifact, checkpoint, reference)
    texts = fitting(ours, TEXTS)
    for strategy in ("none", "simple", "first", "average", "max"):
        expected = theirs(texts, aggregation_strategy=strategy, ignore_labels=[])
        close(ours(texts, batch_size=3, aggregation_strategy=strategy, ignore_labels=[]), expected, strategy)
        # default ignore_labels ["O"]: transformers' output filtered the same way
        filtered = [[e for e in row if "O" not in (e.get("entity"), e.get("entity_group"))] for row in expected]
        close(ours(texts, aggregation_strategy=strategy), filtered, f"{strategy}/default")
    close(ours(texts[0]), theirs(texts[0]))
    close(ours(texts[0], ignore_labels=["O", "B-PER", "I-PER"]), theirs(texts[0], ignore_labels=["O", "B-PER", "I-PER"]))


@pytest.mark.parametrize("family", heads("fill-mask"))
def test_fill_mask_parity(family: str, artifact: Any, checkpoint: Any, reference: Any) -> None:
    ours, theirs, _ = pair("fill-mask", family, artifact, checkpoint, reference)
    mask = ours.mask_token
    texts = fitting(ours, [
        f"Emmanuel Macron vit à {mask} et travaille.", f"The party was {mask} 🎉 and everyone loved it.",
        f"東京は{mask}の首都です。", f"{mask}.", f"Marie Curie won Nobel {mask} in two sciences.",
    ])
    close(ours(texts[0]), theirs(texts[0]))
    close(ours(texts, batch_size=2), theirs(texts))
    close(ours(texts[1], top_k=3), theirs(texts[1], top_k=3))
    close(ours([texts[2]]), theirs([texts[2]]))  # a one-item list comes back unwrapped, as in transformers
    two = f"The {mask} sat on the {mask}."
    close(ours(two, top_k=2), theirs(two, top_k=2))  # one list per mask
    vocab = list(ours.tokenizer.tokenizer.get_vocab())
    targets = sorted(v for v in vocab if v.isalpha())[:4] + ["notinthevocabularyatall"]
    close(ours(texts[1], targets=targets), theirs(texts[1], targets=targets))
    close(ours(texts[1], targets=targets[0], top_k=10), theirs(texts[1], targets=targets[0], top_k=10))


@pytest.mark.parametrize("family", heads("feature-extraction"))
def test_feature_extraction_parity(family: str, artifact: Any, checkpoint: Any, reference: Any) -> None:
    ours, theirs, _ = pair("feature-extraction", family, artifact, checkpoint, reference)
    texts = fitting(ours, TEXTS)
    mine, ref = ours(texts, batch_size=3), theirs(texts)
    assert len(mine) == len(ref)
    for a, b in zip(mine, ref):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.shape[0] == 1
        np.testing.assert_allclose(a, b, atol=ATOL)
    single = ours(texts[0], return_tensors=True)
    assert isinstance(single, np.ndarray) and single.shape == np.asarray(ref[0]).shape
    # encode(): mean pooling by default (no 1_Pooling here), equal to pooling transformers' states
    vectors = ours.encode(texts, batch_size=2)
    expected = np.stack([np.asarray(r)[0].mean(axis=0) for r in ref])
    np.testing.assert_allclose(vectors, expected, atol=ATOL)
    cls = ours.encode(texts, pooling="cls", normalize=True)
    expected = np.stack([np.asarray(r)[0][0] for r in ref])
    np.testing.assert_allclose(cls, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=ATOL)
    np.testing.assert_allclose(ours.encode(texts, pooling="max"),
                               np.stack([np.asarray(r)[0].max(axis=0) for r in ref]), atol=ATOL)
    assert ours.encode(texts[0]).shape == (vectors.shape[1],)


@pytest.mark.parametrize("family", heads("multiple-choice"))
def test_multiple_choice_parity(family: str, artifact: Any, checkpoint: Any) -> None:
    import torch
    import transformers

    art = artifact(family, "multiple-choice")
    ours = load(art.path, device="cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(art.path))
    model = transformers.AutoModelForMultipleChoice.from_pretrained(str(checkpoint(family, "multiple-choice"))).eval()
    questions = [
        ("Where does Emmanuel Macron live?", ["À Paris.", "In Tokyo 東京", "On the moon 🚀 with friends and family"]),
        ("Crème brûlée is", ["a dessert", "a car"]),
        ("Pick one", ["only choice"]),
    ]
    for prompt, choices in questions:
        batch = tokenizer([prompt] * len(choices), choices, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v[None] for k, v in batch.items()}).logits[0]
        expected = torch.softmax(logits, -1).numpy()
        result = ours(prompt, choices)
        assert [s["choice"] for s in result["scores"]] == choices
        np.testing.assert_allclose([s["score"] for s in result["scores"]], expected, atol=ATOL)
        assert result["best"] == {"choice": choices[int(expected.argmax())], "score": result["best"]["score"],
                                  "index": int(expected.argmax())}
        assert ours(prompt=prompt, choices=choices) == result
        assert ours({"prompt": prompt, "choices": choices}) == result
    many = ours([{"prompt": p, "choices": c} for p, c in questions])
    assert [m["best"]["index"] for m in many] == [ours(p, c)["best"]["index"] for p, c in questions]


# ---------------------------------------------------------------------------------------------- bad input

BAD_TEXTS: list[Any] = ["", "   \n\t", None, 42, ["fine", 3], ["fine", None], [""], []]


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "fill-mask", "feature-extraction"])
def test_bad_text_inputs_raise_input_error(task: str, artifact: Any) -> None:
    pipe = load(artifact("bert", task).path, device="cpu")
    for bad in BAD_TEXTS:
        if task == "feature-extraction" and bad == []:
            continue
        with pytest.raises(InputError):
            pipe(bad)
    with pytest.raises(InputError):
        pipe()  # missing argument
    with pytest.raises(InputError):
        pipe("one", text="two")


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "fill-mask", "feature-extraction"])
def test_long_text_truncated_or_rejected(task: str, artifact: Any) -> None:
    pipe = load(artifact("bert", task).path, device="cpu")
    mask = pipe.artifact.manifest.tokenizer.mask_token
    long = f"{mask} " + "the river flooded the valley in the spring " * 200
    result = pipe(long)  # truncated at the model's max length (documented): a result, no crash
    assert result is not None
    with pytest.raises(InputError, match="max length"):
        pipe(long, truncation=False)


def test_wrong_task_and_options(artifact: Any) -> None:
    clf = load(artifact("bert", "text-classification").path, device="cpu")
    with pytest.raises(UnsupportedError, match="feature-extraction"):
        clf.encode(["a sentence"])
    with pytest.raises(UnsupportedError):
        clf("text", function_to_apply="tanh")
    with pytest.raises(InputError):
        clf("text", top_k=0)
    with pytest.raises(InputError):
        clf(["a", "b"], text_pair="c")
    with pytest.raises(InputError):
        clf({"text": "a", "pair": "b"})
    with pytest.raises(InputError):
        clf([["a", "b"]])
    ner = load(artifact("bert", "token-classification").path, device="cpu")
    with pytest.raises(UnsupportedError, match="aggregation_strategy"):
        ner("text", aggregation_strategy="longest")
    mlm = load(artifact("bert", "fill-mask").path, device="cpu")
    with pytest.raises(InputError, match="mask"):
        mlm("no mask in this text")
    with pytest.raises(InputError, match="top_k"):
        mlm("[MASK] here", top_k=-1)
    emb = load(artifact("bert", "feature-extraction").path, device="cpu")
    with pytest.raises(UnsupportedError, match="pooling"):
        emb.encode(["a"], pooling="weighted")
    with pytest.raises(InputError):
        emb.encode(["a", ""])
    with pytest.raises(InputError):
        emb.encode(None)
    with pytest.raises(InputError):
        emb.encode(["a"], batch_size=0)
    assert emb.encode([]).shape == (0, 32)
    mc = load(artifact("bert", "multiple-choice").path, device="cpu")
    for call in (lambda: mc("prompt"), lambda: mc("prompt", []), lambda: mc("prompt", "a str"),
                 lambda: mc("", ["a"]), lambda: mc("prompt", ["a", None]), lambda: mc(),
                 lambda: mc([{"prompt": "p"}]), lambda: mc([{"prompt": "p", "choices": ["a"], "x": 1}]),
                 lambda: mc(None, ["a"]), lambda: mc("p", ["a"], prompt="q")):
        with pytest.raises(InputError):
            call()
    with pytest.raises(UnsupportedError):
        mc.encode(["a"])
    # every failure above is an EncoderForgeError: the CLI prints it as one line
    assert issubclass(InputError, EncoderForgeError) and issubclass(UnsupportedError, EncoderForgeError)

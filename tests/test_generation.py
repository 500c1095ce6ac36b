"""text-generation: the KV-cache graph (export --with-past) and greedy decoding on onnxruntime.

For every causal family (tiny models): greedy tokens with the cache == without it == transformers'
`model.generate(do_sample=False)`, token for token; the no-cache graph is causal; the with-past graph's contract
(names, dynamic axes, validation incl. an empty past) is in the manifest; bad input is a clear InputError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoderforge.artifact import Artifact
from encoderforge.errors import InputError, UnsupportedError
from encoderforge.exporters.families import FAMILIES
from encoderforge.runtime import load
from encoderforge.runtime.pipelines.text_generation import TextGenerationPipeline, positions

CAUSAL = [family for family, spec in FAMILIES.items() if "text-generation" in spec.heads]
PROMPTS = [
    "The museum in Lyon holds",
    "Emmanuel Macron vit à Paris. Crème brûlée 😀",
    "東京は",
    "Yes",
]
NEW_TOKENS = 12


def with_past(artifact: Artifact) -> dict[str, Any]:
    """The manifest's with_past section as JSON."""
    assert artifact.manifest.with_past is not None
    return artifact.manifest.with_past.to_json()


@pytest.fixture(scope="session")
def generator(tmp_path_factory: pytest.TempPathFactory, checkpoint: Callable[..., Path]) -> Callable[..., Any]:
    """generator(family) -> (artifact with model.onnx + model_with_past.onnx, its pipeline, the torch model)."""
    import transformers

    from encoderforge.exporters import ExportConfig, export

    root = tmp_path_factory.mktemp("generation")
    cache: dict[str, Any] = {}

    def build(family: str) -> Any:
        if family not in cache:
            source = checkpoint(family, "text-generation")
            artifact = export(ExportConfig(model=str(source), task="causal-lm", output=root / family, with_past=True))
            model = transformers.AutoModelForCausalLM.from_pretrained(str(source)).eval()
            cache[family] = (artifact, load(artifact.path, device="cpu"), model)
        return cache[family]

    return build


def test_every_causal_family_is_covered() -> None:
    assert set(CAUSAL) == {"roberta", "camembert", "rembert", "bert"}


def _transformers_greedy(model: Any, ids: list[int], rule: dict[str, Any], new_tokens: int) -> list[int]:
    import torch

    prompt = torch.tensor([ids])
    kwargs: dict[str, Any] = {"attention_mask": torch.ones_like(prompt)}
    if rule["pad_id"] is not None:
        # transformers 5's generate() passes 0-based position_ids unless given some, which is not how the
        # RoBERTa family numbers positions (padding_idx + 1 onward); give it the model's own numbering.
        kwargs["position_ids"] = torch.from_numpy(positions(np.asarray([ids]), **rule))
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, num_beams=1, **kwargs)
    return [int(i) for i in out[0]]


@pytest.mark.parametrize("family", CAUSAL)
def test_cached_equals_uncached_equals_transformers(family: str, generator: Callable[..., Any]) -> None:
    artifact, pipe, model = generator(family)
    rule = with_past(artifact)["positions"]
    for prompt in PROMPTS:
        ids = pipe.tokenizer.tokenizer.encode(prompt).ids
        cached = pipe.generate_ids(ids, max_new_tokens=NEW_TOKENS, use_cache=True)
        uncached = pipe.generate_ids(ids, max_new_tokens=NEW_TOKENS, use_cache=False)
        reference = _transformers_greedy(model, ids, rule, NEW_TOKENS)
        assert cached[: len(ids)] == ids
        assert len(cached) > len(ids)
        assert cached == uncached, f"{family} {prompt!r}: cache changes the tokens"
        assert cached == reference, f"{family} {prompt!r}: differs from transformers' greedy generate()"


@pytest.mark.parametrize("family", CAUSAL)
def test_positions_match_the_model(family: str, generator: Callable[..., Any]) -> None:
    """The runtime's position ids equal the ones the torch model computes itself, pad ids included."""
    import torch

    artifact, pipe, model = generator(family)
    rule = with_past(artifact)["positions"]
    pad = artifact.manifest.tokenizer.pad_token_id
    ids = np.asarray([pipe.tokenizer.tokenizer.encode(PROMPTS[0]).ids + [pad, 7, 8]], dtype=np.int64)
    embeddings = model.base_model.embeddings
    if rule["pad_id"] is None:
        expected = embeddings.position_ids[:, : ids.shape[1]].numpy()
    else:
        expected = embeddings.create_position_ids_from_input_ids(torch.from_numpy(ids), embeddings.padding_idx).numpy()
    np.testing.assert_array_equal(positions(ids, **rule), np.broadcast_to(expected, ids.shape))


@pytest.mark.parametrize("family", CAUSAL)
def test_no_cache_graph_is_causal(family: str, generator: Callable[..., Any]) -> None:
    """Changing a later token must not change the logits of earlier positions (and does change its own)."""
    _, pipe, _ = generator(family)
    ids = np.asarray([pipe.tokenizer.tokenizer.encode(PROMPTS[0]).ids], dtype=np.int64)
    changed = ids.copy()
    changed[0, -2] = 5 if changed[0, -2] != 5 else 6
    logits = [pipe.session.run(pipe._base_feed(x, np.ones_like(x)))["logits"] for x in (ids, changed)]
    np.testing.assert_allclose(logits[0][:, :-2], logits[1][:, :-2], atol=1e-6, rtol=0)
    assert np.abs(logits[0][:, -2:] - logits[1][:, -2:]).max() > 1e-4


@pytest.mark.parametrize("family", CAUSAL)
def test_with_past_contract_in_manifest(family: str, generator: Callable[..., Any]) -> None:
    artifact, _, model = generator(family)
    spec = with_past(artifact)
    layers = model.config.num_hidden_layers
    assert spec["model_file"] == "model_with_past.onnx" and spec["model_file"] in artifact.manifest.files
    assert spec["validation"]["passed"] and spec["validation"]["max_abs_diff"] <= 1e-4
    names = [case["name"] for case in spec["validation"]["cases"]]
    assert "prefill-empty-past-padded-batch" in names and any(n.endswith("no-cache-reference") for n in names)
    assert any(case.get("past_sequence") == 0 for case in spec["validation"]["cases"])
    inputs = {value["name"]: value["axes"] for value in spec["inputs"]}
    outputs = {value["name"]: value["axes"] for value in spec["outputs"]}
    expected_inputs = [*artifact.input_names, "position_ids",
                       *(f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value"))]
    assert list(inputs) == expected_inputs
    assert list(outputs) == ["logits", *(f"present.{i}.{k}" for i in range(layers) for k in ("key", "value"))]
    assert inputs["attention_mask"] == ["batch", "total_sequence"]
    assert inputs["past_key_values.0.key"] == ["batch", spec["num_heads"], "past_sequence", spec["head_dim"]]
    assert outputs["present.0.value"] == ["batch", spec["num_heads"], "total_sequence", spec["head_dim"]]
    assert ("token_type_ids" in inputs) == (family in ("bert", "rembert"))


def test_pipeline_output_like_transformers(generator: Callable[..., Any]) -> None:
    _, pipe, _ = generator("bert")
    assert isinstance(pipe, TextGenerationPipeline) and pipe.has_cache_graph
    prompt = PROMPTS[0]
    full = pipe(prompt, max_new_tokens=5)
    assert isinstance(full, list) and len(full) == 1 and set(full[0]) == {"generated_text"}
    new = pipe(prompt, max_new_tokens=5, return_full_text=False)[0]["generated_text"]
    assert full[0]["generated_text"] == prompt + new
    tokens = pipe(text=prompt, max_new_tokens=5, return_tensors=True)[0]["generated_token_ids"]
    assert tokens == pipe.generate_ids(pipe.tokenizer.tokenizer.encode(prompt).ids, max_new_tokens=5)
    assert pipe(prompt, max_new_tokens=5, use_cache=False) == full
    many = pipe([prompt, PROMPTS[1]], max_new_tokens=3)
    assert len(many) == 2 and all(isinstance(r, list) and "generated_text" in r[0] for r in many)
    assert many[0] == pipe(prompt, max_new_tokens=3)


def test_eos_stops_generation(generator: Callable[..., Any]) -> None:
    _, pipe, _ = generator("roberta")
    ids = pipe.tokenizer.tokenizer.encode(PROMPTS[0]).ids
    sequence = pipe.generate_ids(ids, max_new_tokens=6)
    forced = TextGenerationPipeline.__new__(TextGenerationPipeline)
    forced.__dict__.update(pipe.__dict__)
    forced.eos_ids = frozenset({sequence[len(ids) + 1]})  # the second new token now ends generation
    for use_cache in (True, False):
        assert forced.generate_ids(ids, max_new_tokens=6, use_cache=use_cache) == sequence[: len(ids) + 2]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: p(""), "empty or whitespace"),
        (lambda p: p("   \n"), "empty or whitespace"),
        (lambda p: p(None), "missing"),
        (lambda p: p(42), "str"),
        (lambda p: p(["ok", 3]), r"text\[1\]"),
        (lambda p: p("Hello", max_new_tokens=0), "max_new_tokens must be an int >= 1"),
        (lambda p: p("Hello", max_new_tokens=-3), "max_new_tokens must be an int >= 1"),
        (lambda p: p("Hello", max_new_tokens=2.5), "max_new_tokens must be an int >= 1"),
        (lambda p: p("Hello", max_new_tokens=True), "max_new_tokens must be an int >= 1"),
        (lambda p: p.generate_ids([], max_new_tokens=3), "no tokens"),
        (lambda p: p("Hello", max_new_tokens=10_000), r"exceeds the model's max length \d+; use max_new_tokens <="),
        (lambda p: p("word " * 500, max_new_tokens=1), "exceeds the model's max length .*shorten the prompt"),
    ],
)
def test_bad_input(call: Callable[[Any], Any], match: str, generator: Callable[..., Any]) -> None:
    _, pipe, _ = generator("bert")
    with pytest.raises(InputError, match=match):
        call(pipe)


def test_use_cache_needs_the_cache_graph(artifact: Callable[..., Artifact]) -> None:
    plain = artifact("bert", "text-generation")
    assert plain.manifest.with_past is None
    pipe = load(plain.path, device="cpu")
    with pytest.raises(InputError, match="--with-past"):
        pipe("Hello", max_new_tokens=2, use_cache=True)
    assert pipe.generate_ids([2, 40, 41], max_new_tokens=3)[:3] == [2, 40, 41]  # no-cache decoding still works


def test_with_past_only_for_text_generation(tmp_path: Path) -> None:
    from encoderforge.exporters import ExportConfig

    with pytest.raises(UnsupportedError, match="text-generation"):
        ExportConfig(model="unused", task="qa", output=tmp_path / "o", with_past=True)


def test_cli_export_with_past(checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    from encoderforge.cli import main

    out = tmp_path / "clm"
    assert main(["export", "--model", str(checkpoint("rembert", "text-generation")), "--task", "causal-lm",
                 "--output", str(out), "--with-past"]) == 0
    artifact = Artifact.load(out)
    assert (out / "model_with_past.onnx").is_file() and with_past(artifact)["validation"]["passed"]


def test_with_past_external_data(checkpoint: Callable[..., Path], tmp_path: Path,
                                 generator: Callable[..., Any]) -> None:
    """Both graphs go to external data above the threshold (lowered here); generation is unchanged."""
    from encoderforge.exporters import ExportConfig, export

    artifact = export(ExportConfig(model=str(checkpoint("bert", "text-generation")), task="causal-lm",
                                   output=tmp_path / "ext", with_past=True, external_data_threshold=1))
    assert {"model_with_past.onnx.data", "model.onnx.data"} <= set(artifact.manifest.files)
    assert with_past(artifact)["external_data"]
    pipe = load(artifact.path, device="cpu")
    _, reference, _ = generator("bert")
    ids = pipe.tokenizer.tokenizer.encode(PROMPTS[0]).ids
    assert pipe.generate_ids(ids, max_new_tokens=6) == reference.generate_ids(ids, max_new_tokens=6)

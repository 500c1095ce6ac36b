"""tokenizer.json in the artifact reproduces the transformers tokenizer: ids, masks, type ids and offsets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from encoderforge.artifact import Artifact
from encoderforge.exporters.families import FAMILIES
from encoderforge.exporters.tokenizer import load_tokenizer

MIXED = [
    "Crème brûlée, naïve façade, Zürich — œuvre.",
    "The party was great 🎉 and the cake 🍰 too 👍🏽",
    "東京は日本の首都です。我喜欢喝茶。서울은 수도입니다.",
    " ",
    "a",
    "Mixed CaSe  TeXt\twith   irregular spacing and numbers 3.5% +1 (555) 010-2030",
    "Москва — столица России.",
]
PAIRS = [("Who wrote it?", "Herman Melville wrote Moby-Dick 🐋 in 1851."), ("Où ?", "À Paris, près de l'Élysée.")]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_tokenizer_json_matches_transformers(
    family: str, artifact: Callable[..., Artifact], checkpoint: Callable[..., Path]
) -> None:
    art = artifact(family, "embed")
    fast = Tokenizer.from_file(str(art.tokenizer_path))
    reference = load_tokenizer(str(checkpoint(family, "embed")))

    def check(expected: dict, got: object) -> None:
        assert got.ids == expected["input_ids"]  # type: ignore[attr-defined]
        assert got.attention_mask == expected["attention_mask"]  # type: ignore[attr-defined]
        assert got.offsets == [tuple(o) for o in expected["offset_mapping"]]  # type: ignore[attr-defined]
        if "token_type_ids" in expected:
            assert got.type_ids == expected["token_type_ids"]  # type: ignore[attr-defined]

    for text in MIXED:
        check(reference(text, return_offsets_mapping=True), fast.encode(text))
    for first, second in PAIRS:
        check(reference(first, second, return_offsets_mapping=True, return_token_type_ids=True),
              fast.encode(first, second))
    # Truncation: the artifact's max length, as the runtime applies it.
    long_text = " ".join(MIXED) * 20
    fast.enable_truncation(art.max_length)
    check(reference(long_text, truncation=True, max_length=art.max_length, return_offsets_mapping=True),
          fast.encode(long_text))
    assert len(fast.encode(long_text).ids) == art.max_length


@pytest.mark.parametrize("family", ["camembert", "rembert"])
def test_sentencepiece_converted_at_export(family: str, checkpoint: Callable[..., Path],
                                           artifact: Callable[..., Artifact]) -> None:
    """These checkpoints ship only a SentencePiece model; the artifact carries the converted tokenizer.json
    whose sequences start and end with the family's special tokens."""
    source = checkpoint(family, "embed")
    assert not (source / "tokenizer.json").exists() and list(source.glob("sentencepiece*.model"))
    art = artifact(family, "embed")
    settings = art.manifest.tokenizer.to_json()
    ids = Tokenizer.from_file(str(art.tokenizer_path)).encode("Crème brûlée").ids
    first = settings["cls_token_id"] if settings["cls_token_id"] is not None else settings["bos_token_id"]
    assert ids[0] == first and ids[-1] == settings["sep_token_id"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_generated_tokenizers_keep_their_vocabulary(family: str, artifact: Callable[..., Artifact],
                                                    checkpoint: Callable[..., Path]) -> None:
    """A tokenizer that collapses to its special tokens (transformers 5.24's fast constructors ignore
    `vocab_file=`, leaving 5 tokens) would turn every text into specials and still export and 'validate'."""
    from encoderforge.synthetic import _TINY_VOCAB, corpus_lines

    sentence = corpus_lines()[3]
    for name, tokenizer in (("checkpoint", load_tokenizer(str(checkpoint(family, "embed")))),
                            ("artifact", Tokenizer.from_file(str(artifact(family, "embed").tokenizer_path)))):
        if isinstance(tokenizer, Tokenizer):
            size, ids = tokenizer.get_vocab_size(), tokenizer.encode(sentence).ids
            specials = {tokenizer.token_to_id(t) for t in ("<s>", "</s>", "<pad>", "<unk>", "<mask>", "[CLS]",
                                                           "[SEP]", "[PAD]", "[UNK]", "[MASK]")} - {None}
        else:
            size, ids = len(tokenizer), tokenizer(sentence)["input_ids"]
            specials = set(tokenizer.all_special_ids)
        words = [i for i in ids if i not in specials]
        assert size >= _TINY_VOCAB // 2, f"{name}: vocabulary of {size}"
        assert len(words) >= len(sentence.split()) // 2 and len(set(words)) >= 5, (name, sentence, ids)

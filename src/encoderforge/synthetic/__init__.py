"""Random-weight checkpoints with locally trained tokenizers, for tests, benchmarks and the demo.

No network: tokenizers are trained on `corpus.txt` (accents, emoji, CJK, code, numbers; the WordPiece vocab
once, and shipped) and models are built from configs with a fixed seed: the same checkpoint in every process.
`size="tiny"` gives 2-layer test models; `size="base"` gives the real-size architecture (roberta-base,
conv-bert-base, rembert, ...) whose latency equals the real checkpoint's.
Needs torch, transformers, tokenizers and sentencepiece (the `export` extra).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from encoderforge.corpus import corpus_lines
from encoderforge.exporters.families import FAMILIES, FamilySpec

Size = Literal["tiny", "base"]
_TINY_VOCAB = 1000


def _byte_bpe(directory: Path) -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    trainer = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer.train_from_iterator(corpus_lines(), vocab_size=_TINY_VOCAB, special_tokens=specials)
    trainer.save_model(str(directory))  # vocab.json + merges.txt, as roberta-base ships them
    return RobertaTokenizer.from_pretrained(str(directory))


# The WordPiece vocab, trained once on corpus.txt (BertWordPieceTokenizer, lowercase, vocab_size 1000) by
# `train_wordpiece_vocab`. Shipped rather than trained per checkpoint: tokenizers' WordPiece trainer gives a
# different vocab in each process (its continuing-subword ids follow hash-map order; tokenizers issue 1794),
# which made every BERT / ConvBERT test model, and what their tests measured, change from run to run.
WORDPIECE_VOCAB = Path(__file__).with_name("wordpiece_vocab.txt")


def train_wordpiece_vocab(output: Path) -> Path:
    """Train a WordPiece vocab on the corpus into `output` (how WORDPIECE_VOCAB was made; not reproducible)."""
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(corpus_lines(), vocab_size=_TINY_VOCAB)
    output.write_text("".join(f"{token}\n" for token, _ in sorted(trainer.get_vocab().items(), key=lambda kv: kv[1])),
                      encoding="utf-8")
    return output


def _wordpiece(directory: Path, tokenizer_class: str) -> Any:
    import transformers

    shutil.copyfile(WORDPIECE_VOCAB, directory / "vocab.txt")
    return getattr(transformers, tokenizer_class).from_pretrained(str(directory), do_lower_case=True)


def _unigram(directory: Path, model_type: str) -> Any:
    """A SentencePiece unigram model, stored as the slow tokenizer file only: export converts it."""
    import sentencepiece as spm
    from transformers import AutoConfig, AutoTokenizer

    if model_type == "camembert":
        # camembert-base's layout: spm <unk>, <s>, </s>; the converter adds the fairseq specials and <mask>
        specials: dict[str, Any] = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1, "unk_piece": "<unk>",
                                    "bos_piece": "<s>", "eos_piece": "</s>"}
        symbols, filename = [], "sentencepiece.bpe.model"
    else:  # rembert
        specials = {"pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3, "pad_piece": "<pad>", "unk_piece": "<unk>",
                    "bos_piece": "[CLS]", "eos_piece": "[SEP]"}
        symbols, filename = ["[MASK]"], "sentencepiece.model"
    with tempfile.TemporaryDirectory() as work:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus_lines()), model_prefix=f"{work}/sp", vocab_size=_TINY_VOCAB,
            model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=3,
            user_defined_symbols=symbols, **specials,
        )
        (directory / filename).write_bytes(Path(f"{work}/sp.model").read_bytes())
    AutoConfig.for_model(model_type).save_pretrained(str(directory))  # lets AutoTokenizer pick the class
    return AutoTokenizer.from_pretrained(str(directory))


def build_tokenizer(family: FamilySpec, directory: Path) -> Any:
    """Train the family's kind of tokenizer into `directory` and return the transformers tokenizer."""
    directory.mkdir(parents=True, exist_ok=True)
    if family.tokenizer_kind == "byte-bpe":
        return _byte_bpe(directory)
    if family.tokenizer_kind == "wordpiece":
        return _wordpiece(directory, "ConvBertTokenizer" if family.name == "convbert" else "BertTokenizer")
    return _unigram(directory, family.model_types[0])


def build_checkpoint(
    family: str, task: str, output: Path, *, size: Size = "tiny", seed: int = 0, **config_overrides: Any
) -> Path:
    """Write a random-weight checkpoint directory (config.json, weights, tokenizer files) for (family, task)."""
    import torch
    import transformers

    spec = FAMILIES.get(family)
    head = spec.head(task)
    output = Path(output)
    tokenizer = build_tokenizer(spec, output)
    base = dict(spec.tiny_config if size == "tiny" else spec.base_config)
    config = transformers.AutoConfig.for_model(spec.model_types[0], **base)
    if size == "tiny" or config.vocab_size < len(tokenizer):
        config.vocab_size = len(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.cls_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
    config.eos_token_id = tokenizer.sep_token_id if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    if head.name == "token-classification":
        labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    for key, value in {**head.config_overrides, **config_overrides}.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = getattr(transformers, head.auto_class).from_config(config)
    _perturb_norms(model, seed)
    model.save_pretrained(str(output))
    if spec.tokenizer_kind != "unigram":  # unigram stays a slow SentencePiece file, as old checkpoints ship it
        tokenizer.save_pretrained(str(output))
    (output / "encoderforge_synthetic.json").write_text(json.dumps({"family": family, "task": task, "size": size}))
    return output


def _perturb_norms(model: Any, seed: int) -> None:
    """Fresh LayerNorms are identity (weight 1, bias 0) and biases zero; randomise them so fusions and
    validation see the general case, as trained weights would."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)

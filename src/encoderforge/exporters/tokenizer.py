"""Tokenizer at export: load it (converting SentencePiece models to a fast tokenizer), save tokenizer.json,
and describe in the manifest what the runtime needs to reproduce truncation, padding, pairs and stride."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encoderforge.errors import ModelSourceError


def load_tokenizer(source: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelSourceError(
            f"cannot load a tokenizer from {source!r}: {str(exc).splitlines()[0]}; the model directory needs "
            "tokenizer.json or the tokenizer's vocabulary files (vocab.txt, vocab.json + merges.txt, *.model)"
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelSourceError(f"tokenizer of {source!r} has no fast (tokenizers) version; it cannot be exported")
    _repair_special_template(tokenizer)
    check_vocabulary(tokenizer, source)
    return tokenizer


MIN_REAL_TOKENS = 10  # a vocabulary with fewer non-special tokens cannot tell texts apart


def check_vocabulary(tokenizer: Any, source: str) -> None:
    """Refuse a tokenizer whose vocabulary collapses to its special tokens: transformers builds one (e.g. 5
    tokens) for a checkpoint without tokenizer files, and then every text becomes `<s></s>`."""
    size = len(tokenizer)
    real = size - len(set(tokenizer.all_special_ids))
    if real < MIN_REAL_TOKENS:
        raise ModelSourceError(
            f"the tokenizer of {source!r} has {size} tokens, {max(real, 0)} of them not special: the checkpoint has "
            "no tokenizer files, so every text would become special tokens only; add tokenizer.json (or vocab.txt / "
            "vocab.json + merges.txt / *.model) to the model directory"
        )


def _repair_special_template(tokenizer: Any) -> None:
    """transformers 5 loses the [CLS] ... [SEP] template when it converts some SentencePiece models
    (RemBERT's sentencepiece.model): the model would then see inputs it was never trained on.
    Rebuild the template from the tokenizer's own cls/sep tokens when none is added."""
    from tokenizers import processors

    cls, sep = tokenizer.cls_token, tokenizer.sep_token
    if cls is None or sep is None or tokenizer("a")["input_ids"][0] == tokenizer.cls_token_id:
        return
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.cls_token_id), (sep, tokenizer.sep_token_id)],
    )


def save_tokenizer(tokenizer: Any, directory: Path, *, max_length: int) -> dict[str, Any]:
    """Write tokenizer.json (+ transformers' config files) and return the manifest's tokenizer section."""
    tokenizer.save_pretrained(str(directory))
    if not (directory / "tokenizer.json").is_file():
        raise ModelSourceError("the tokenizer did not save a tokenizer.json; only fast tokenizers can be exported")
    return {
        "file": "tokenizer.json",
        "class": type(tokenizer).__name__,
        "max_length": max_length,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "mask_token": tokenizer.mask_token,
        "mask_token_id": tokenizer.mask_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "unk_token_id": tokenizer.unk_token_id,
        "special_ids": sorted(set(tokenizer.all_special_ids)),
        "num_special_tokens_single": tokenizer.num_special_tokens_to_add(pair=False),
        "num_special_tokens_pair": tokenizer.num_special_tokens_to_add(pair=True),
        "model_input_names": list(tokenizer.model_input_names),
    }

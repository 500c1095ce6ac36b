"""Load the reference model, config and tokenizer from a hub id or a local directory, with clear errors."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoderforge.errors import ModelSourceError
from encoderforge.exporters.families import FamilySpec, family_for_model_type
from encoderforge.tasks import TaskHead

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """Everything the exporter needs from the source: the eval-mode torch model, its config and tokenizer."""

    source: str
    family: FamilySpec
    head: TaskHead
    config: Any
    model: Any
    tokenizer: Any
    untrained: tuple[str, ...] = ()  # weights the checkpoint lacked (only with allow_untrained_head)


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or os.sep in model and Path(model).expanduser().exists()


def _check_local_config(path: Path) -> None:
    """A local config.json that is not a JSON object is reported as such (transformers' error for it reads
    like a hub or cache problem)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSourceError(f"{str(path)!r} is not valid JSON ({exc}); fix it or save the model again with "
                               "save_pretrained()") from exc
    if not isinstance(data, dict):
        raise ModelSourceError(f"{str(path)!r} holds {type(data).__name__}, not a transformers config (a JSON "
                               "object); fix it or save the model again with save_pretrained()")


def load_config(model: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    if _looks_local(model) or Path(model).expanduser().is_dir():
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelSourceError(f"model directory {model!r} does not exist; pass an existing directory or a hub id")
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"{model!r} has no config.json; pass the directory written by save_pretrained() of a transformers model"
            )
        _check_local_config(path / "config.json")
        model = str(path)
    try:
        return AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else "the hub cannot be reached"
        raise ModelSourceError(
            f"cannot load {model!r}: {why} ({type(exc).__name__}); download it once or pass a local model directory"
        ) from exc
    except ValueError as exc:  # e.g. unknown model_type without trust_remote_code
        raise ModelSourceError(f"cannot read config of {model!r}: {exc}".splitlines()[0]) from exc


def load_reference(model: str, task: str, *, trust_remote_code: bool = False,
                   allow_untrained_head: bool = False) -> Reference:
    """Load (family, head, config, eval-mode model, tokenizer); each failure is one clear ModelSourceError."""
    import transformers

    from encoderforge.exporters.tokenizer import load_tokenizer

    config = load_config(model, trust_remote_code=trust_remote_code)
    family = family_for_model_type(config.model_type)
    head = family.head(task)
    for key, value in head.config_overrides.items():
        setattr(config, key, value)
    source = str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model
    auto_class = getattr(transformers, head.auto_class)
    try:
        torch_model, info = auto_class.from_pretrained(source, config=config, trust_remote_code=trust_remote_code,
                                                       output_loading_info=True)
    except Exception as exc:  # safetensors, torch and transformers each raise their own types here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(
            f"cannot read the weights of {model!r}: {first}; check the weight files (model.safetensors / "
            "pytorch_model.bin) are complete"
        ) from exc
    untrained = _untrained(info, head)
    if untrained and not allow_untrained_head:
        raise ModelSourceError(
            f"{model!r} has no trained weights for the {head.name} head: transformers initialised "
            f"{', '.join(untrained[:4])}{' ...' if len(untrained) > 4 else ''} at random, so its answers would be "
            f"noise; export a checkpoint fine-tuned for {head.name}, or pass --allow-untrained-head (latency tests)"
        )
    if untrained:
        log.warning("%s: %s weights initialised at random (--allow-untrained-head): %s", model, head.name,
                    ", ".join(untrained))
    torch_model.eval()
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code)
    return Reference(source, family, head, config, torch_model, tokenizer, untrained)


def _untrained(info: Any, head: TaskHead) -> tuple[str, ...]:
    """Weights transformers had to initialise because the checkpoint lacks them. The pooler of a bare
    encoder is left out for feature-extraction, whose output (last_hidden_state) does not use it."""
    missing = sorted(str(k) for k in (info or {}).get("missing_keys", ()))
    if head.name == "feature-extraction":
        missing = [k for k in missing if not k.startswith("pooler.")]
    return tuple(missing)

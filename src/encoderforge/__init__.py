"""encoderforge: validated, optimized ONNX artifacts from Hugging Face encoders, and a torch-free runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def load(path: str | Path, **options: Any) -> Any:
    """Load an artifact directory as its task's pipeline (see encoderforge.runtime.load)."""
    from encoderforge.runtime import load as _load

    return _load(path, **options)

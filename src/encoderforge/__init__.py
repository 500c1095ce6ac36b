"""encoderforge: validated, optimized ONNX artifacts from Hugging Face encoders, and a torch-free runtime."""

from __future__ import annotations

__version__ = "0.1.0"

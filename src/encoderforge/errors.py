"""One exception hierarchy. Every message names the bad value, the valid choices and the fix, on one line."""

from __future__ import annotations


class EncoderForgeError(Exception):
    """Base of every error encoderforge raises on purpose; the CLI prints it as one line and exits 2."""


class UnknownKeyError(EncoderForgeError, KeyError):
    """A name that is not registered (family, task head, pass, backend, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelSourceError(EncoderForgeError):
    """The --model argument cannot be loaded: missing directory, no config.json, unreachable hub, bad weights."""


class UnsupportedError(EncoderForgeError):
    """A valid name that does not fit here, e.g. a task head the family does not have."""


class ExportError(EncoderForgeError):
    """Tracing the reference model to ONNX failed."""


class ValidationError(EncoderForgeError):
    """The exported graph disagrees with the reference model beyond tolerance."""


class ArtifactError(EncoderForgeError):
    """An artifact directory cannot be written, or is missing, corrupt or of an unknown schema."""


class InputError(EncoderForgeError):
    """Bad input to a pipeline or command: empty text, wrong type, missing argument."""

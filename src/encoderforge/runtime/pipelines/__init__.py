"""Task pipelines: one module per task head, registered by the head's canonical name."""

from __future__ import annotations

from encoderforge.registry import Registry
from encoderforge.runtime.pipelines.base import Pipeline

PIPELINES: Registry[type[Pipeline]] = Registry("pipeline")

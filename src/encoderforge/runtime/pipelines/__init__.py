"""Task pipelines: one module per task head, registered by the head's canonical name."""

from __future__ import annotations

from encoderforge.registry import Registry
from encoderforge.runtime.pipelines.base import Pipeline

PIPELINES: Registry[type[Pipeline]] = Registry("pipeline")

# Importing a task's module registers its pipeline (one line per module, sorted).
import encoderforge.runtime.pipelines.feature_extraction
import encoderforge.runtime.pipelines.fill_mask
import encoderforge.runtime.pipelines.multiple_choice
import encoderforge.runtime.pipelines.question_answering
import encoderforge.runtime.pipelines.text_classification
import encoderforge.runtime.pipelines.text_generation
import encoderforge.runtime.pipelines.token_classification  # noqa: F401

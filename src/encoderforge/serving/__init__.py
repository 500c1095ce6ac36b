"""Serving and scale-out on existing engines: Triton Inference Server through PyTriton (`serve`), a Triton
model repository for users' own Triton fleets (`triton-repo`), and corpus jobs on Ray Data or local processes
(`batch`). PyTriton, tritonclient, Ray and pyarrow are optional extras, imported only when used."""

from __future__ import annotations

from encoderforge.serving.tasks import ServingError

__all__ = ["ServingError"]

"""Serving and scale-out on existing engines: HTTP serving on Ray Serve (`serve`: KServe v2, OpenAI and TEI
embeddings, replicas), a Triton model repository for users' own Triton fleets (`triton-repo`), and corpus jobs on
Ray Data or local processes (`batch`). Ray, tritonclient and pyarrow are optional extras, imported only when
used."""

from __future__ import annotations

from encoderforge.serving.tasks import ServingError

__all__ = ["ServingError"]

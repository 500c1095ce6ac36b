"""What every task pipeline shares: the artifact, its tokenizer, a backend session, and batched execution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Encoding

from encoderforge.artifact import Artifact
from encoderforge.runtime.backends import Session
from encoderforge.runtime.batching import length_batches
from encoderforge.tokenization import ArtifactTokenizer


class Pipeline:
    task: str = ""

    def __init__(self, artifact: Artifact, session: Session) -> None:
        self.artifact = artifact
        self.session = session
        self.tokenizer = ArtifactTokenizer.from_artifact(artifact)
        self.config: dict[str, Any] = artifact.config()
        axes = {spec["name"]: spec["axes"] for spec in artifact.manifest["outputs"]}
        self._per_token = {name for name, a in axes.items() if len(a) > 1 and a[1] == "sequence"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.artifact.path)!r}, backend={self.session.backend!r})"

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def forward(
        self, encodings: Sequence[Encoding], *, batch_size: int = 32, max_tokens: int | None = 16384
    ) -> list[dict[str, np.ndarray]]:
        """Run encodings in length-sorted batches; return one dict of outputs per encoding, in input order.
        Per-token outputs are trimmed to the encoding's own length (no padding rows)."""
        results: list[dict[str, np.ndarray]] = [{} for _ in encodings]
        lengths = [len(e.ids) for e in encodings]
        for batch in length_batches(lengths, batch_size=batch_size, max_tokens=max_tokens):
            outputs = self.session.run(self.tokenizer.to_feed([encodings[i] for i in batch]))
            for row, index in enumerate(batch):
                results[index] = {
                    name: value[row, : lengths[index]] if name in self._per_token else value[row]
                    for name, value in outputs.items()
                }
        return results

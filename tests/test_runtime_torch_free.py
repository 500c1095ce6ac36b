"""The runtime needs neither torch nor transformers: run pipelines in a subprocess where importing them fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        BLOCKED = ("torch", "transformers", "sentence_transformers")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    for name in list(sys.modules):
        if name.split(".")[0] in Block.BLOCKED:
            del sys.modules[name]
    """
)


def run_blocked(code: str) -> Any:
    script = BLOCKER + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_blocker_really_blocks() -> None:
    result = run_blocked(
        """
        import json
        try:
            import torch  # noqa: F401
            print(json.dumps("imported"))
        except ImportError:
            print(json.dumps("blocked"))
        """
    )
    assert result == "blocked"


def test_runtime_pipelines_without_torch(artifact: Any) -> None:
    embed = artifact("bert", "feature-extraction").path
    ner = artifact("bert", "token-classification").path
    result = run_blocked(
        f"""
        import json, sys
        import encoderforge
        from encoderforge.runtime import load
        emb = load({str(embed)!r}, device="cpu")
        vectors = emb.encode(["a sentence", "Crème brûlée 🎉 東京", "a much longer sentence " * 5], batch_size=2)
        states = emb("a sentence")
        entities = load({str(ner)!r}, device="cpu")("Emmanuel Macron vit à Paris.", aggregation_strategy="simple")
        from encoderforge import cli
        print(json.dumps({{
            "shape": list(vectors.shape), "tokens": len(states[0]), "entities": isinstance(entities, list),
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")),
        }}))
        """
    )
    assert result == {"shape": [3, 32], "tokens": result["tokens"], "entities": True, "loaded": []}
    assert result["tokens"] > 2

"""Expected fusion counts per model, derived from its config.json (never hard-coded per checkpoint).

    MultiHeadAttention / Attention  == num_hidden_layers   (ConvBERT: its self-attention half, one per layer)
    SkipLayerNormalization          == 2 x num_hidden_layers (after attention and after the feed-forward)
    Gelu (Gelu | BiasGelu | FastGelu) == num_hidden_layers (the feed-forward activation)

A causal-LM head (text-generation) keeps its causal mask: no attention fusion is expected there.
"""

from __future__ import annotations

from encoderforge.artifact import Artifact
from encoderforge.tasks import task_head

GELU_OPS = ("Gelu", "BiasGelu", "FastGelu")
_GELU_ACTS = {"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu"}


def expected_counts(artifact: Artifact) -> dict[str, int]:
    config = artifact.config()
    layers = int(config.get("num_hidden_layers", 0))
    expected = {"SkipLayerNormalization": 2 * layers}
    if not task_head(artifact.task).causal:  # a decoder's causal mask is not the fused attention's
        expected["MultiHeadAttention"] = layers
    if str(config.get("hidden_act", "gelu")) in _GELU_ACTS:
        expected["Gelu"] = layers
    return expected


def attention_heads(artifact: Artifact) -> int:
    """Heads of the (self-)attention: ConvBERT splits num_attention_heads between attention and convolution."""
    config = artifact.config()
    heads = int(config["num_attention_heads"])
    if config.get("model_type") == "convbert":
        heads = max(1, heads // int(config.get("head_ratio", 2)))
    return heads

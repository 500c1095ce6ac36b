"""Pack the three projections of a fused self-attention into one com.microsoft.Attention node.

    X ─MatMul(Wq)─Add(bq)─┐
    X ─MatMul(Wk)─Add(bk)─┼─ MultiHeadAttention(mask) ─► O      becomes      Attention(X, [Wq|Wk|Wv], [bq|bk|bv], mask) ─► O
    X ─MatMul(Wv)─Add(bv)─┘

One GEMM of width 3H instead of three of width H, and, after dynamic quantization, one QAttention that
quantizes X once. Applies only where the projections feed nothing else (not ConvBERT, whose query also
drives the span-based dynamic convolution) and all three share X. Runs after `fuse-attention`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from encoderforge.graph_passes._graph import MS_DOMAIN, GraphIndex, commit
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult


def _projection(index: GraphIndex, name: str) -> tuple[str, np.ndarray, np.ndarray, list[onnx.NodeProto]] | None:
    """name = Add(MatMul(X, W), b) with constant W, b, read only by the attention -> (X, W, b, nodes)."""
    add = index.producer.get(name)
    if add is None or add.op_type != "Add" or len(index.consumers.get(name, [])) != 1:
        return None
    for side in (0, 1):
        matmul = index.producer.get(add.input[side])
        bias = index.constant(add.input[1 - side])
        if matmul is not None and matmul.op_type == "MatMul" and bias is not None:
            weight = index.constant(matmul.input[1])
            if weight is None or weight.ndim != 2 or bias.shape != (weight.shape[1],):
                return None
            if len(index.consumers.get(matmul.output[0], [])) != 1:
                return None
            return matmul.input[0], weight, bias, [add, matmul]
    return None


class PackQkv:
    name = "pack-qkv"
    in_place = True

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        index = GraphIndex(model.graph)
        remove: list[onnx.NodeProto] = []
        add: list[onnx.NodeProto] = []
        attentions = [n for n in model.graph.node if n.op_type == "MultiHeadAttention" and n.domain == MS_DOMAIN]
        packed = 0
        for mha in attentions:
            parts = [_projection(index, mha.input[i]) for i in range(3)]
            if any(p is None for p in parts) or len({p[0] for p in parts if p is not None}) != 1:
                continue
            q, k, v = (p for p in parts if p is not None)
            weight = np.concatenate([q[1], k[1], v[1]], axis=1).astype(np.float32)
            bias = np.concatenate([q[2], k[2], v[2]]).astype(np.float32)
            w_name = index.add_initializer(index.fresh("qkv_weight"), weight)
            b_name = index.add_initializer(index.fresh("qkv_bias"), bias)
            attrs = {a.name: helper.get_attribute_value(a) for a in mha.attribute}
            node = helper.make_node(
                "Attention", [q[0], w_name, b_name, mha.input[4] if len(mha.input) > 4 else ""], list(mha.output),
                name=index.fresh("Attention"), domain=MS_DOMAIN, num_heads=int(attrs["num_heads"]),
            )
            if "scale" in attrs:
                node.attribute.append(helper.make_attribute("scale", float(attrs["scale"])))
            add.append(node)
            remove.extend([mha, *q[3], *k[3], *v[3]])
            packed += 1
        commit(model.graph, remove, add)
        notes = () if packed == len(attentions) else (
            f"{len(attentions) - packed} attention(s) left as MultiHeadAttention (projections shared or not constant)",)
        return model, PassResult(self.name, {"Attention": packed}, {}, notes)


PASSES.register(PackQkv.name, PackQkv())

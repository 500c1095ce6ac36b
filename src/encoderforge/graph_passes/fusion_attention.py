"""Fuse scaled dot-product attention into one com.microsoft.MultiHeadAttention node.

Matches what both exporter styles of transformers 5 emit, for every family (BERT, RoBERTa, CamemBERT, RemBERT,
and the self-attention half of ConvBERT, whose other half is a span-based dynamic convolution):

    Q2d ─Reshape─Transpose(0,2,1,3)─[Mul c1]─┐
    K2d ─Reshape─Transpose(0,2,3,1)─[Mul c2]─MatMul─[Div c3 | Mul c3]─Add(mask)─Softmax─[Where(IsNaN)]─┐
    V2d ─Reshape─Transpose(0,2,1,3)──────────────────────────────────────────────────────────────────MatMul
                                                                                                   Transpose(0,2,1,3) ─► O4

    softmax(Q Kᵀ · scale + mask) V,  scale = c1 · c2 · c3 (or / c3)

becomes

    MultiHeadAttention(Q2d, K2d, V2d, key_padding_mask = int32(attention_mask), num_heads, scale) ─Reshape─► O4

The mask must come from the `attention_mask` graph input through padding-only ops (no causal triangle); the
SDPA NaN guard (Where(IsNaN(p), 0, p)) only matters for fully masked rows, which a padding mask with at least
one real token never produces. ORT's own optimizer finds none of these in transformers-5 exports (new mask
utilities) and no attention at all in ConvBERT; that is why this pass exists.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from encoderforge.graph_passes._graph import MS_DOMAIN, GraphIndex, commit
from encoderforge.graph_passes.base import PASSES, PassContext, PassResult
from encoderforge.graph_passes.expectations import attention_heads, expected_counts

_CAUSAL_OPS = {"Trilu", "Less", "LessOrEqual", "Greater"}


def _peel_scale(index: GraphIndex, name: str, scale: float) -> tuple[str, float, list[onnx.NodeProto]]:
    """Walk up through Mul / Div by scalar constants, accumulating the scale."""
    nodes: list[onnx.NodeProto] = []
    while True:
        node = index.producer.get(name)
        if node is None or node.op_type not in ("Mul", "Div") or len(node.input) != 2:
            return name, scale, nodes
        value = index.scalar(node.input[1])
        other = node.input[0]
        if value is None and node.op_type == "Mul":
            value, other = index.scalar(node.input[0]), node.input[1]
        if value is None:
            return name, scale, nodes
        scale = scale * value if node.op_type == "Mul" else scale / value
        nodes.append(node)
        name = other


def _head_branch(index: GraphIndex, name: str, perm: list[int]) -> tuple[str, int, list[onnx.NodeProto]] | None:
    """name = Transpose(perm)(Reshape(X2d, [b, s, heads, d])) -> (X2d, heads, nodes)."""
    transpose = index.producer.get(name)
    if transpose is None or transpose.op_type != "Transpose":
        return None
    if list(helper.get_attribute_value(transpose.attribute[0])) != perm:
        return None
    reshape = index.parent(transpose, 0, "Reshape")
    if reshape is None:
        return None
    heads = _heads_of(index, reshape.input[1])
    if heads is None:
        return None
    return reshape.input[0], heads, [transpose, reshape]


def _heads_of(index: GraphIndex, shape_name: str) -> int | None:
    shape = index.constant(shape_name)
    if shape is not None and shape.size == 4:
        return int(shape[2])
    concat = index.producer.get(shape_name)
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
        return None
    value = index.constant(concat.input[2])
    return None if value is None else int(value.reshape(-1)[0])


def _mask_is_padding(index: GraphIndex, mask: str) -> bool:
    found = index.ancestors(mask)
    return "input:attention_mask" in found and not (found & _CAUSAL_OPS)


class FuseAttention:
    name = "fuse-attention"
    in_place = True

    def apply(self, model: onnx.ModelProto, context: PassContext) -> tuple[onnx.ModelProto, PassResult]:
        graph = model.graph
        index = GraphIndex(graph)
        remove: list[onnx.NodeProto] = []
        add: list[onnx.NodeProto] = []
        notes: list[str] = []
        mask_name: str | None = None
        fused = 0
        for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
            match = self._match(index, softmax, attention_heads(context.artifact))
            if match is None:
                continue
            q2d, k2d, v2d, heads, scale, mask, out4, head_dim, nodes = match
            if not _mask_is_padding(index, mask):
                notes.append(f"{softmax.name}: mask is not a padding mask from attention_mask; left unfused")
                continue
            if mask_name is None:
                mask_name, mask_nodes = self._mask(index, graph)
                add.extend(mask_nodes)
            # head_dim 0: the merge Reshape to (batch, seq, hidden) was matched too; MHA writes its output directly
            out3 = index.fresh("mha_out") if head_dim else out4
            add.append(helper.make_node(
                "MultiHeadAttention", [q2d, k2d, v2d, "", mask_name], [out3], name=index.fresh("MultiHeadAttention"),
                domain=MS_DOMAIN, num_heads=heads, scale=scale,
            ))
            if head_dim:  # ConvBERT: the (batch, seq, heads, head_dim) output is concatenated with the conv half
                shape = index.add_initializer(index.fresh("mha_shape"), np.array([0, 0, heads, head_dim], np.int64))
                add.append(helper.make_node("Reshape", [out3, shape], [out4], name=index.fresh("Reshape")))
            if not head_dim:
                _copy_shape(graph, q2d, out4)  # lets the session fuse the residual SkipLayerNormalization
            remove.extend(nodes)
            fused += 1
        commit(graph, remove, add)
        if fused and not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        expected = {k: v for k, v in expected_counts(context.artifact).items() if k == "MultiHeadAttention"}
        return model, PassResult(self.name, {"MultiHeadAttention": fused}, expected, tuple(notes))

    @staticmethod
    def _match(index: GraphIndex, softmax: onnx.NodeProto, config_heads: int) -> tuple | None:  # type: ignore[type-arg]
        axis = next((helper.get_attribute_value(a) for a in softmax.attribute if a.name == "axis"), -1)
        if axis not in (-1, 3):
            return None
        add = index.parent(softmax, 0, "Add")
        if add is None:
            return None
        for scores_side in (0, 1):
            scores, scale, scale_nodes = _peel_scale(index, add.input[scores_side], 1.0)
            qk = index.producer.get(scores)
            if qk is not None and qk.op_type == "MatMul":
                mask = add.input[1 - scores_side]
                break
        else:
            return None
        q_name, scale, q_scale_nodes = _peel_scale(index, qk.input[0], scale)
        k_name, scale, k_scale_nodes = _peel_scale(index, qk.input[1], scale)
        q = _head_branch(index, q_name, [0, 2, 1, 3])
        k = _head_branch(index, k_name, [0, 2, 3, 1])
        if q is None or k is None or q[1] != k[1]:
            return None
        # forward: Softmax -> [IsNaN / Where] -> MatMul(., V) -> Transpose(0,2,1,3)
        probs, guard = softmax.output[0], []
        users = index.consumers.get(probs, [])
        if {u.op_type for u in users} == {"IsNaN", "Where"} and len(users) == 2:
            where = next(u for u in users if u.op_type == "Where")
            isnan = next(u for u in users if u.op_type == "IsNaN")
            if where.input[0] != isnan.output[0] or where.input[2] != probs:
                return None
            probs, guard = where.output[0], [isnan, where]
        pv = _real_consumer(index, probs)
        if pv is None or pv.op_type != "MatMul" or pv.input[0] != probs:
            return None
        v = _head_branch(index, pv.input[1], [0, 2, 1, 3])
        if v is None:
            return None
        tail = [pv]
        out = _real_consumer(index, pv.output[0])
        if out is not None and out.op_type == "Reshape":  # SDPA: a same-shape Reshape before the transpose
            tail.append(out)
            out = _real_consumer(index, out.output[0])
        if out is None or out.op_type != "Transpose":
            return None
        if list(helper.get_attribute_value(out.attribute[0])) != [0, 2, 1, 3]:
            return None
        tail.append(out)
        heads = q[1] if q[1] > 0 else config_heads  # the SDPA path reshapes with -1 heads
        head_dim = _head_dim(index, pv.input[1]) or 0
        if head_dim <= 0:
            return None
        merge = _real_consumer(index, out.output[0])
        merged = merge is not None and merge.op_type == "Reshape" and _is_merge(index, merge.input[1], heads * head_dim)
        if merged and merge is not None:
            tail.append(merge)
        final = merge.output[0] if merged and merge is not None else out.output[0]
        nodes = [softmax, add, qk, *scale_nodes, *q_scale_nodes, *k_scale_nodes, *guard, *tail]
        return q[0], k[0], v[0], heads, scale, mask, final, head_dim if not merged else 0, nodes

    @staticmethod
    def _mask(index: GraphIndex, graph: onnx.GraphProto) -> tuple[str, list[onnx.NodeProto]]:
        source = next(i for i in graph.input if i.name == "attention_mask")
        rank = len(source.type.tensor_type.shape.dim) or 2
        cast = index.fresh("mask_int32")
        nodes = [helper.make_node("Cast", ["attention_mask"], [cast], name=index.fresh("Cast"),
                                  to=onnx.TensorProto.INT32)]
        if rank == 2:
            return cast, nodes
        flat = index.fresh("mask_2d")  # multiple choice: (batch, choices, seq) -> (batch * choices, seq)
        nodes.append(helper.make_node("Flatten", [cast], [flat], name=index.fresh("Flatten"), axis=rank - 1))
        return flat, nodes


def _copy_shape(graph: onnx.GraphProto, source: str, target: str) -> None:
    """Give `target` the inferred shape of `source` (same (batch, seq, hidden)) unless it already has one."""
    known = {v.name: v for v in graph.value_info}
    if source in known and target not in known:
        info = graph.value_info.add()
        info.CopyFrom(known[source])
        info.name = target


def _real_consumer(index: GraphIndex, name: str) -> onnx.NodeProto | None:
    """The one consumer of `name` that is not a Shape node (shape computations die with the pattern)."""
    users = [u for u in index.consumers.get(name, []) if u.op_type != "Shape"]
    return users[0] if len(users) == 1 and name not in index.graph_outputs else None


def _is_merge(index: GraphIndex, shape_name: str, width: int) -> bool:
    """Is this Reshape's target (batch, seq, heads x head_dim)?"""
    shape = index.constant(shape_name)
    if shape is not None:
        return shape.size == 3 and int(shape[2]) in (width, -1)
    concat = index.producer.get(shape_name)
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 3:
        return False
    value = index.constant(concat.input[2])
    return value is not None and int(value.reshape(-1)[0]) == width


def _head_dim(index: GraphIndex, name: str) -> int | None:
    transpose = index.producer.get(name)
    reshape = index.parent(transpose, 0, "Reshape") if transpose is not None else None
    if reshape is None:
        return None
    shape = index.constant(reshape.input[1])
    if shape is not None and shape.size == 4:
        return int(shape[3])
    concat = index.producer.get(reshape.input[1])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
        return None
    value = index.constant(concat.input[3])
    return None if value is None else int(value.reshape(-1)[0])


PASSES.register(FuseAttention.name, FuseAttention())

"""onnxruntime-only rewrites of a text graph: the standard ONNX ops of a BERT layer replaced by
onnxruntime's fused CPU kernels (com.microsoft domain).

Why: torch.onnx writes self-attention as opset 23's standard `Attention` op, which onnxruntime's
CPU provider runs as a generic kernel beside separate Q/K/V GEMMs and transposes; its contrib
`Attention` (one packed Q/K/V GEMM, no transposes) does the same math faster (MiniLM on
spamassassin, interleaved rounds: fp32 batch-32 +12 %, int8 +6-9 %; NOTES-ortspeed.md), and
dynamic quantisation turns it into `QAttention`. onnxruntime's own transformers optimizer does
not recognise the graphs torch.onnx's dynamo exporter writes (its patterns are those of the
TorchScript exporter), so the rewrite is done here on the few patterns our exports contain.

The rewritten graph uses contrib ops that onnxruntime-web's standard build need not have: it is
for onnxruntime on a server only, written beside the standard graph (which the web page keeps).
Both are verified against PyTorch the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MS = "com.microsoft"


class _Graph:
    """Producer / consumer / initializer lookups over one onnx GraphProto."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.producer = {out: n for n in graph.node for out in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.inits = {i.name: i for i in graph.initializer}

    def made_by(self, name: str, op: str) -> Any | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def only_consumer(self, name: str, op: str) -> Any | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def array(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        init = self.inits.get(name)
        return None if init is None else numpy_helper.to_array(init)


def _projection(g: _Graph, head_input: str) -> tuple[str, np.ndarray, np.ndarray, list] | None:
    """`Transpose(Reshape(MatMul(x, W) + b))` feeding attention: (x, W, b, its nodes)."""
    transpose = g.made_by(head_input, "Transpose")
    reshape = transpose and g.made_by(transpose.input[0], "Reshape")
    add = reshape and g.made_by(reshape.input[0], "Add")
    if add is None:
        return None
    matmul = next((g.made_by(i, "MatMul") for i in add.input if g.made_by(i, "MatMul")), None)
    bias_name = next((i for i in add.input if i in g.inits), None)
    if matmul is None or bias_name is None or matmul.input[1] not in g.inits:
        return None
    weight, bias = g.array(matmul.input[1]), g.array(bias_name)
    if weight is None or weight.ndim != 2 or bias is None or bias.shape != weight.shape[1:]:
        return None
    nodes = [matmul, add, reshape, transpose]
    if not _heads_first(transpose) or any(len(g.consumers[n.output[0]]) != 1 for n in nodes):
        return None  # something else reads an intermediate: removing it would break the graph
    return matmul.input[0], weight, bias, nodes


def _heads_first(transpose: Any) -> bool:
    """Whether a Transpose swaps axes 1 and 2 (batch, length, heads, size <-> heads first)."""
    from onnx import helper

    perm = next(
        (helper.get_attribute_value(a) for a in transpose.attribute if a.name == "perm"), None
    )
    return perm is not None and list(perm) == [0, 2, 1, 3]


def _heads(g: _Graph, reshape: Any, hidden: int) -> int | None:
    """Heads of a `Reshape(x, Concat(batch, length, heads, head_size))`; heads may be -1."""
    concat = g.made_by(reshape.input[1], "Concat")
    if concat is None or len(concat.input) != 4:
        return None
    heads, size = g.array(concat.input[2]), g.array(concat.input[3])
    if heads is None or size is None or heads.size != 1 or size.size != 1:
        return None
    heads_, size_ = int(heads.reshape(-1)[0]), int(size.reshape(-1)[0])
    if heads_ == -1 and size_ > 0 and hidden % size_ == 0:
        return hidden // size_
    return heads_ if heads_ > 0 and heads_ * size_ == hidden else None


def _merged_output(g: _Graph, attention: Any) -> tuple[str, list] | None:
    """`Reshape(Transpose(attention))` back to (batch, length, hidden): its name, its nodes."""
    transpose = g.only_consumer(attention.output[0], "Transpose")
    reshape = transpose and g.only_consumer(transpose.output[0], "Reshape")
    if reshape is None or not _heads_first(transpose):
        return None
    return reshape.output[0], [transpose, reshape]


def _fused_attention(
    g: _Graph, attention: Any, mask: str | None, k: int, packed: bool = True
) -> tuple[Any, list, list] | None:
    """The contrib `Attention` node replacing one standard `Attention` and its projections,
    its new initialisers, and the nodes it replaces; None when the pattern differs."""
    from onnx import helper, numpy_helper

    if attention.domain not in ("", "ai.onnx") or len(attention.input) < 3:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in attention.attribute}
    if attrs.get("is_causal", 0) or attrs.get("softcap", 0.0) or len(attention.output) > 1:
        return None
    projections = [_projection(g, name) for name in attention.input[:3]]
    merged = _merged_output(g, attention)
    if None in projections or merged is None or len({p[0] for p in projections}) != 1:
        return None
    heads = _heads(g, projections[0][3][2], projections[0][1].shape[1])
    if heads is None or (len(attention.input) > 3 and attention.input[3] and mask is None):
        return None
    extra = {"scale": float(attrs["scale"])} if attrs.get("scale") else {}
    if not packed:  # the three projections stay; only the attention itself is fused
        node = helper.make_node(
            "MultiHeadAttention",
            [p[3][1].output[0] for p in projections] + ["", mask or ""],
            [merged[0]],
            name=f"fused_attention_{k}",
            domain=MS,
            num_heads=heads,
            **extra,
        )
        replaced = [n for p in projections for n in p[3][2:]] + [attention, *merged[1]]
        return node, [], replaced
    weight = np.concatenate([p[1] for p in projections], axis=1)
    bias = np.concatenate([p[2] for p in projections])
    inits = [
        numpy_helper.from_array(weight, f"fused_qkv_weight_{k}"),
        numpy_helper.from_array(bias, f"fused_qkv_bias_{k}"),
    ]
    node = helper.make_node(
        "Attention",
        [projections[0][0], inits[0].name, inits[1].name, mask or ""],
        [merged[0]],
        name=f"fused_attention_{k}",
        domain=MS,
        num_heads=heads,
        **extra,
    )
    replaced = [n for p in projections for n in p[3]] + [attention, *merged[1]]
    return node, inits, replaced


def _mask_cast(graph: Any) -> Any | None:
    """`Cast(attention_mask -> int32)`: the key padding mask contrib attention takes."""
    from onnx import TensorProto, helper

    if "attention_mask" not in {i.name for i in graph.input}:
        return None
    return helper.make_node(
        "Cast",
        ["attention_mask"],
        ["attention_mask_int32"],
        to=TensorProto.INT32,
        name="attention_mask_int32",
    )


def _contrib_gelu(node: Any) -> Any | None:
    """Standard exact `Gelu` as the contrib one (same erf formula, a vectorised kernel)."""
    from onnx import helper

    if node.op_type != "Gelu" or node.domain not in ("", "ai.onnx"):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("approximate", b"none") not in (b"none", "none"):
        return None
    return helper.make_node("Gelu", list(node.input), list(node.output), name=node.name, domain=MS)


def _drop_dead(graph: Any) -> None:
    """Remove nodes whose outputs nothing reads, and initialisers no node reads."""
    outputs = {o.name for o in graph.output}
    while True:
        read = outputs | {i for n in graph.node for i in n.input}
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)


def fuse_for_onnxruntime(model: Any, packed: bool = True) -> dict[str, int]:
    """Rewrite `model` (an onnx ModelProto) in place for onnxruntime's CPU kernels; how many
    nodes of each kind were fused. Nothing is rewritten where a pattern differs."""
    from onnx import helper

    graph = model.graph
    g = _Graph(graph)
    cast = _mask_cast(graph)
    mask = cast.output[0] if cast is not None else None
    fused: dict[int, Any] = {}  # id(original attention node) -> contrib node
    removed: set[int] = set()
    for k, node in enumerate(n for n in graph.node if n.op_type == "Attention"):
        found = _fused_attention(g, node, mask, k, packed)
        if found is None:
            continue
        fused[id(node)], inits, replaced = found
        graph.initializer.extend(inits)
        removed.update(id(n) for n in replaced)
    gelus = 0
    nodes = [cast] if fused and cast is not None else []
    for node in graph.node:
        if id(node) in fused:
            nodes.append(fused[id(node)])
        elif id(node) not in removed:
            gelu = _contrib_gelu(node)
            gelus += gelu is not None
            nodes.append(gelu or node)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_dead(graph)
    if (fused or gelus) and all(o.domain != MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    return {"attention": len(fused), "gelu": gelus}

"""Graph passes on an exported ``lm.onnx``: fusions, and the fp16 graph for CUDA.

Each pass rewrites the ONNX graph in place and keeps every name the runtime binds (inputs,
outputs, caches), so the runtime runs the result unchanged::

    fuse_projections   MatMuls that read the same activation with constant weights
                       (q + kv of attention, gate + up of the feed-forward) -> one MatMul of the
                       concatenated weights and a Split: one pass over the activation, not two
    fuse_skip_norms    residual Add + RMSNorm (Cast, Pow, ReduceMean, Add eps, Sqrt, Div, Mul,
                       Mul weight) -> com.microsoft SkipSimplifiedLayerNormalization, which
                       returns the normalised tensor and the residual sum in one kernel
    to_fp16            every float tensor and weight in float16, graph inputs and outputs too,
                       except two float32 islands: the rotary angles (positions up to the KV
                       capacity lose whole radians in float16) and RMSNorms not fused above
                       (a square of a float16 activation overflows above 256)

Rotary positions are computed inside the graph from ``start``, so "rotary inside attention"
needs no pass. :func:`optimize_lm` runs the passes and checks the result loads in onnxruntime.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.atomic import atomic_path

MS_DOMAIN = "com.microsoft"
_NORM_SCOPE = re.compile(r"^(/[A-Za-z_]*norm[A-Za-z_0-9]*)/")
_NORM_TAIL = ("Cast", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Mul_1")
_TYPE_AGNOSTIC = {"Shape", "Size", "Cast"}  # float inputs of any precision are fine


# --------------------------------------------------------------------------- helpers
def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            out[name].append(node)
    return out


def _initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in graph.initializer}


def _through_identity(graph: onnx.GraphProto, name: str) -> str:
    """The tensor an Identity chain ending in ``name`` copies (the exporter shares equal
    weights, e.g. norm gains that are still all ones, through Identity nodes)."""
    producers = {o: n for n in graph.node for o in n.output}
    while name in producers and producers[name].op_type == "Identity":
        name = producers[name].input[0]
    return name


def _constant_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of ``name`` when it is an initializer or a Constant node's output."""
    name = _through_identity(graph, name)
    inits = _initializers(graph)
    if name in inits:
        return numpy_helper.to_array(inits[name])
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give every node a unique name: the passes refer to nodes by name (protobuf wrappers
    are not stable objects)."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}__{i}"
        seen.add(node.name)


def _index(graph: onnx.GraphProto, node: onnx.NodeProto) -> int:
    return [n.name for n in graph.node].index(node.name)


def _remove(graph: onnx.GraphProto, nodes: Iterable[onnx.NodeProto]) -> None:
    drop = {n.name for n in nodes}
    keep = [n for n in graph.node if n.name not in drop]
    del graph.node[:]
    graph.node.extend(keep)


def _prune_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers, Constant and Identity nodes that nothing reads."""
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    orphans = [
        n for n in graph.node if n.op_type in ("Constant", "Identity") and n.output[0] not in used
    ]
    _remove(graph, orphans)
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _use_ms_domain(model: onnx.ModelProto) -> None:
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


# --------------------------------------------------------------------------- fusions
def fuse_projections(model: onnx.ModelProto) -> int:
    """Merge MatMuls ``x @ W_i`` that share ``x`` (weights constant, 2-D) into ``x @ [W_1 ...]``
    followed by a Split on the last axis; returns how many groups were merged."""
    graph = model.graph
    _name_nodes(graph)
    inits = _initializers(graph)
    groups: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and len(weight.dims) == 2:
            groups[node.input[0]].append(node)
    merged = 0
    for x, nodes in groups.items():
        if len(nodes) < 2:
            continue
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        if len({w.shape[0] for w in weights}) != 1 or len({w.dtype for w in weights}) != 1:
            continue
        name = nodes[0].name.rsplit("/", 1)[0] + "_fused"
        w = numpy_helper.from_array(np.concatenate(weights, axis=1), f"{name}.weight")
        sizes = numpy_helper.from_array(
            np.array([w.shape[1] for w in weights], np.int64), f"{name}.sizes"
        )
        graph.initializer.extend([w, sizes])
        at = _index(graph, nodes[0])
        mm = helper.make_node("MatMul", [x, w.name], [f"{name}/out"], name=f"{name}/MatMul")
        split = helper.make_node(
            "Split",
            [mm.output[0], sizes.name],
            [n.output[0] for n in nodes],
            name=f"{name}/Split",
            axis=-1,
        )
        _remove(graph, nodes)
        graph.node.insert(at, split)
        graph.node.insert(at, mm)
        merged += 1
    _prune_initializers(graph)
    return merged


def _norm_nodes(graph: onnx.GraphProto, scope: str) -> dict[str, onnx.NodeProto] | None:
    found = {n.name[len(scope) + 1 :]: n for n in graph.node if n.name.startswith(scope + "/")}
    found = {k: v for k, v in found.items() if v.op_type != "Constant"}
    return found if set(found) == set(_NORM_TAIL) else None


def fuse_skip_norms(model: onnx.ModelProto) -> int:
    """Replace each residual Add feeding an RMSNorm by one SkipSimplifiedLayerNormalization;
    returns how many were fused."""
    graph = model.graph
    _name_nodes(graph)
    scopes = sorted({m.group(1) for n in graph.node if (m := _NORM_SCOPE.match(n.name))})
    fused = 0
    for scope in scopes:
        parts = _norm_nodes(graph, scope)
        if parts is None:
            continue
        producers = {o: n for n in graph.node for o in n.output}
        users = _consumers(graph)
        cast = parts["Cast"]
        add = producers.get(cast.input[0])
        gamma = _through_identity(graph, parts["Mul_1"].input[1])
        eps = _constant_value(graph, parts["Add"].input[1])
        inner = {o for k, n in parts.items() if k not in ("Cast", "Mul_1") for o in n.output}
        if (
            add is None
            or add.op_type != "Add"
            or eps is None
            or _constant_value(graph, gamma) is None
        ):
            continue
        if any(u.name[: len(scope) + 1] != scope + "/" for o in inner for u in users[o]):
            continue
        for user in users[add.output[0]]:  # e.g. Shape: read the same sum from the fused node
            for i, name in enumerate(user.input):
                if name == add.output[0] and user.name != cast.name:
                    user.input[i] = cast.output[0]
        node = helper.make_node(
            "SkipSimplifiedLayerNormalization",
            [add.input[0], add.input[1], gamma],
            [parts["Mul_1"].output[0], "", "", cast.output[0]],
            name=f"{scope}/SkipRMSNorm",
            domain=MS_DOMAIN,
            epsilon=float(eps),
        )
        at = _index(graph, add)
        _remove(graph, [add, *parts.values()])
        graph.node.insert(at, node)
        fused += 1
    if fused:
        _use_ms_domain(model)
    _prune_initializers(graph)
    return fused


# --------------------------------------------------------------------------- float16
def float_tensors(model: onnx.ModelProto, known: set[str] | None = None) -> set[str]:
    """Names of the float32 tensors of ``model``.

    ONNX shape inference types the standard ops; it cannot see through our contrib ops, so pass
    ``known`` (the float tensors of the graph before the fusions: the passes keep names) and the
    tensors the fusions made are added here (outputs of MatMul, Split and contrib ops whose
    first input is float).
    """
    g = onnx.shape_inference.infer_shapes(model).graph
    floats = set(known or ())
    floats |= {
        v.name
        for v in [*g.input, *g.output, *g.value_info]
        if v.type.tensor_type.elem_type == TensorProto.FLOAT
    }
    floats |= {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT}
    for node in g.node:
        if node.op_type == "Constant" and node.attribute[0].t.data_type == TensorProto.FLOAT:
            floats.add(node.output[0])
        fused = node.domain == MS_DOMAIN or node.op_type in ("MatMul", "Split")
        if fused and node.input[0] in floats:
            floats |= {o for o in node.output if o}
    return floats


def _islands(graph: onnx.GraphProto) -> set[str]:
    """Nodes kept in float32: the ancestors of Cos/Sin (rotary angles) and unfused norms."""
    producers = {o: n for n in graph.node for o in n.output}
    keep: set[str] = set()
    todo = [n for n in graph.node if n.op_type in ("Cos", "Sin")]
    todo += [n for n in graph.node if _NORM_SCOPE.match(n.name) and n.domain != MS_DOMAIN]
    while todo:
        node = todo.pop()
        if node.name in keep:
            continue
        keep.add(node.name)
        if node.op_type != "Shape" and not _NORM_SCOPE.match(node.name):  # shapes: any type
            todo += [producers[i] for i in node.input if i in producers]
    return keep


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def to_fp16(model: onnx.ModelProto, known: set[str] | None = None) -> onnx.ModelProto:
    """A float16 copy of ``model`` (float32 islands as the module docstring says); ``known``: see
    :func:`float_tensors`."""
    floats = float_tensors(model, known)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    del g.value_info[:]
    _constants_to_initializers(g)
    _name_nodes(g)
    island = _islands(g)
    inits = _initializers(g)
    half: set[str] = set()  # float tensors that now hold float16
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []

    def as_type(name: str, dtype: int) -> str:
        """``name`` in ``dtype``: an initializer copy or a Cast node (each made once)."""
        current = TensorProto.FLOAT16 if name in half else TensorProto.FLOAT
        if current == dtype:
            return name
        key = (name, dtype)
        if key not in casts:
            suffix = "fp16" if dtype == TensorProto.FLOAT16 else "fp32"
            casts[key] = f"{name}.{suffix}"
            if name in inits and name not in [i.name for i in g.input]:
                arr = numpy_helper.to_array(inits[name])
                arr = arr.astype(np.float16 if dtype == TensorProto.FLOAT16 else np.float32)
                g.initializer.append(numpy_helper.from_array(arr, casts[key]))
            else:
                new_nodes.append(
                    helper.make_node(
                        "Cast", [name], [casts[key]], to=dtype, name=f"{name}/cast_{suffix}"
                    )
                )
        return casts[key]

    for inp in g.input:
        if inp.name in floats:
            inp.type.tensor_type.elem_type = TensorProto.FLOAT16
            half.add(inp.name)
    for node in g.node:
        want = TensorProto.FLOAT if node.name in island else TensorProto.FLOAT16
        if node.op_type not in _TYPE_AGNOSTIC:
            for i, name in enumerate(node.input):
                if name in floats:
                    node.input[i] = as_type(name, want)
        _retype_node(node, want)
        if want == TensorProto.FLOAT16:
            half |= {o for o in node.output if o in floats}
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    for out in g.output:
        if out.name in floats:
            if out.name not in half:  # produced in an island: cast at the end
                _cast_island_output(g, out.name)
            out.type.tensor_type.elem_type = TensorProto.FLOAT16
    _prune_initializers(g)
    return m


def _retype_node(node: onnx.NodeProto, want: int) -> None:
    """Casts to float and float-valued ConstantOfShape follow the node's precision."""
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
            attr.i = want
        if (
            node.op_type == "ConstantOfShape"
            and attr.name == "value"
            and attr.t.data_type == TensorProto.FLOAT
            and want == TensorProto.FLOAT16
        ):
            value = numpy_helper.to_array(attr.t).astype(np.float16)
            attr.t.CopyFrom(numpy_helper.from_array(value, attr.t.name))


def _cast_island_output(graph: onnx.GraphProto, name: str) -> None:
    """Graph output ``name`` made in a float32 island: its producer now writes ``name.fp32``
    and a Cast to float16 writes ``name``."""
    inner = name + ".fp32"
    for node in graph.node:
        for i, o in enumerate(node.output):
            if o == name:
                node.output[i] = inner
        for i, o in enumerate(node.input):
            if o == name:
                node.input[i] = inner
    graph.node.append(
        helper.make_node("Cast", [inner], [name], to=TensorProto.FLOAT16, name=f"{name}/cast_fp16")
    )


# --------------------------------------------------------------------------- driver
def optimize_lm(src: Path, dst: Path, *, fuse: bool = True, fp16: bool = False) -> dict[str, int]:
    """Read ``src``, apply the fusions (``fuse``) and the float16 pass (``fp16``), write
    ``dst`` and check it loads in onnxruntime; returns counts of what was done."""
    import onnxruntime as ort

    model = onnx.load(str(src))
    known = float_tensors(model)
    done = {"projections": 0, "skip_norms": 0}
    if fuse:
        done["projections"] = fuse_projections(model)
        done["skip_norms"] = fuse_skip_norms(model)
    if fp16:
        model = to_fp16(model, known)
    onnx.checker.check_model(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
        ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    return done

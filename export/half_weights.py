"""Float16 storage of a float32 ONNX graph's weights: half the file, float32 arithmetic.

Every float32 initialiser whose values float16 holds exactly (the weights, once
:func:`round_to_float16` has rounded the torch model) is stored as float16 under a new name and
turned back into float32 by a ``Cast`` node at the top of the graph, under its old name::

    W (float32 [K, N])  ->  W.float16 (float16 [K, N]) -> Cast(to=float32) -> W -> MatMul ...

onnxruntime folds those casts when it loads the graph, so it computes exactly as the float32
graph of the rounded model would. Constants that float16 cannot hold (epsilons such as 1e-8,
which it rounds to 0) stay float32, and so do initialisers of fewer than ``MIN_ELEMENTS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

SUFFIX = ".float16"
MIN_ELEMENTS = 16

if TYPE_CHECKING:
    from onnx import GraphProto


def round_to_float16(model: torch.nn.Module) -> torch.nn.Module:
    """Round every parameter and buffer of ``model`` to the nearest float16, in place (they
    stay float32 tensors); returns ``model``."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


def store_float16(path: Path) -> int:
    """Rewrite the graph at ``path`` with float16 initialisers behind casts; returns how many
    initialisers it stored as float16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    FLOAT = TensorProto.FLOAT
    model = onnx.load(str(path))
    graph = model.graph
    casts, kept, n = [], [], 0
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        exact = value.dtype == np.float32 and np.array_equal(half.astype(np.float32), value)
        if not exact or value.size < MIN_ELEMENTS:
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(half, init.name + SUFFIX))
        name = init.name + SUFFIX
        casts.append(helper.make_node("Cast", [name], [init.name], f"{name}/Cast", to=FLOAT))
        n += 1
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    nodes = [*casts, *graph.node]
    graph.ClearField("node")
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return n


def cast_initialisers(graph: GraphProto) -> dict[str, np.ndarray]:
    """The float32 values that the ``Cast`` nodes of an ONNX ``graph`` make of its
    initialisers, by their output names (what :func:`store_float16` hid behind casts)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in inits:
            out[node.output[0]] = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
    return out

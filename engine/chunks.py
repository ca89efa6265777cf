"""Run a function over a long signal in overlapping chunks and cross-fade the results.

Models see bounded windows (memory, attention length), songs are any length. ``fn`` maps a chunk
``[n]`` to any array whose last axis is ``n`` samples (``[n]``, ``[S, n]`` ...); chunks overlap by
``fade`` samples, each weighted by a linear ramp there, and the weighted sum is normalised, so an
identity ``fn`` gives the input back exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def chunk_starts(n: int, chunk: int, fade: int) -> list[int]:
    """Start samples of chunks of ``chunk`` samples overlapping by ``fade`` that cover ``[0, n)``."""
    if chunk <= 0 or not 0 <= fade < chunk:
        raise ValueError("need chunk > 0 and 0 <= fade < chunk")
    starts = [0]
    while starts[-1] + chunk < n:
        starts.append(starts[-1] + chunk - fade)
    return starts


def process_in_chunks(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, chunk: int, fade: int
) -> np.ndarray:
    """``fn`` over ``x`` ``[..., N]`` in cross-faded chunks (cut on the last axis) -> ``[..., N]``
    (``fn``'s leading axes)."""
    n = x.shape[-1]
    out: np.ndarray | None = None
    weight = np.zeros(n, np.float64)
    ramp = (np.arange(fade, dtype=np.float64) + 0.5) / max(fade, 1)
    starts = chunk_starts(n, chunk, fade)
    for i, start in enumerate(starts):
        stop = min(start + chunk, n)
        y = np.asarray(fn(x[..., start:stop]))
        if out is None:
            out = np.zeros((*y.shape[:-1], n), np.float64)
        w = np.ones(stop - start, np.float64)
        if i > 0 and fade:
            w[:fade] = ramp
        if i + 1 < len(starts) and fade:
            w[-fade:] = np.minimum(w[-fade:], ramp[::-1])
        out[..., start:stop] += w * y
        weight[start:stop] += w
    assert out is not None
    return (out / np.maximum(weight, 1e-12)).astype(np.float32)

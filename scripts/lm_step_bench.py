"""Per-step time of LM graphs, measured in alternation so machine load hits them alike.

Each graph runs the real decode shape: prefill of the mixture prefix, then every step of the
four tracks (``--steps``, default a whole window) for a batch of windows, on the CPU (or CUDA),
through :class:`engine.runtime.decode.Decoder` (IOBinding, KV buffer written in place).

    python scripts/lm_step_bench.py resources/models/default/lm.onnx /tmp/opt/lm.onnx \\
        --folder resources/models/default --batch 16 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from engine.runtime.decode import Decoder
from engine.runtime.model import Model


def time_graph(model: Model, batch: int, steps: int) -> tuple[float, float]:
    """Mean wall and CPU seconds per single-position step after a prefill (random prefix and
    ids). CPU time is the steadier figure on a shared machine."""
    s, rng = model.sizes, np.random.default_rng(0)
    dec = Decoder(model, batch)
    dec.prefill(
        rng.standard_normal((batch, s.prefix_len, s.dim)).astype(np.float32),
        rng.standard_normal((batch, s.layout.n_frames + 1, s.dim)).astype(np.float32),
    )
    ids = rng.integers(0, s.layout.codebook_size, (steps, batch, 1, s.layout.n_levels))
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        dec.step(ids[i])
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graphs", nargs="+", type=Path, help="lm.onnx files to compare")
    ap.add_argument("--folder", type=Path, required=True, help="model folder (sizes, encoder)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=0, help="default: one whole window")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    models = []
    for graph in args.graphs:
        m = Model(args.folder, args.device, args.threads, verify=False)
        m.use_lm(graph)
        models.append(m)
    s = models[0].sizes
    steps = args.steps or s.capacity - s.prefix_len
    times: dict[str, list[tuple[float, float]]] = {str(g): [] for g in args.graphs}
    for _ in range(args.rounds):
        for graph, model in zip(args.graphs, models, strict=True):
            times[str(graph)].append(time_graph(model, args.batch, steps))
    result = {}
    for g, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        result[g] = {
            "wall_ms_per_step": [round(1e3 * t[0], 3) for t in ts],
            "median_wall_ms": round(1e3 * wall, 3),
            "median_cpu_ms": round(1e3 * cpu, 3),
            "steps_per_s": round(1 / wall, 1),
        }
    print(
        json.dumps(
            {"batch": args.batch, "steps": steps, "device": args.device, "graphs": result}, indent=1
        )
    )


if __name__ == "__main__":
    main()

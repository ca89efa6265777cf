"""What N GPUs should do for ``stemtok library`` and for data-parallel training, from FLOP counts
(docs/scale-out.md); nothing here is measured on a GPU.

    python scripts/scale_out_flops.py --json docs/scale-out/projection.json

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors (2 per
multiply-add, the networks only): the teachers' forward pass per second of stereo audio
(``scripts/teacher_flops.py``), and the paper-size LM's forward pass on one 4-s window; a
training step is taken as 3 forward passes (forward + backward). Time on a GPU = FLOPs / (peak x
``--utilisation``). Training is projected with a fixed batch per GPU (``--windows-per-gpu``, the
paper recipe's batch of 24 windows spread over 8 GPUs: 3), so N GPUs take N times the windows per step; DDP adds an
all-reduce of the float32 gradients: 2 (G-1)/G x their bytes inside a node of G GPUs (over
``--nvlink-gbytes``), and with several nodes 2 (M-1)/M x their bytes between the M nodes (over
``--network-gbytes`` per node), counted as if it did not overlap the backward pass (DDP
overlaps it, so this is the slow end).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from teacher_flops import teacher_gflops
from torch.utils.flop_counter import FlopCounterMode

from engine.atomic import write_json
from engine.models.lm import SeparationLM, count_parameters
from engine.models.lm_config import LMConfig, TrainConfig
from engine.models.roformer import TeacherConfig

GPUS = (1, 2, 4, 8, 16, 32, 64)
SONG_S = 240.0  # a four-minute song


def lm_step(cfg: LMConfig, batch: int) -> dict[str, Any]:
    """FLOPs of one training step of ``cfg`` on ``batch`` windows (per GPU), its parameters."""
    with torch.device("meta"):
        model = SeparationLM(cfg)
        mel = torch.zeros(1, cfg.n_mels, cfg.mel_frames)
        ids = torch.zeros(1, cfg.layout.seq_length, cfg.n_levels, dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            model(mel, ids)
    return {
        "parameters": count_parameters(model),
        "tflop_per_gpu_step": round(3 * counter.get_total_flops() * batch / 1e12, 3),
        "windows_per_gpu": batch,
        "window_s": cfg.mel_frames / 50,
    }


def step_seconds(tflop: float, params: int, gpus: int, args: argparse.Namespace) -> float:
    """One data-parallel step (``tflop`` per GPU) on ``gpus`` GPUs, all-reduce included."""
    compute = tflop / (args.peak_tflops * args.utilisation)
    grad_bytes = 4 * params
    local = min(gpus, args.gpus_per_node)
    nodes = -(-gpus // args.gpus_per_node)
    reduce = 2 * (local - 1) / local * grad_bytes / (args.nvlink_gbytes * 1e9)
    reduce += 2 * (nodes - 1) / nodes * grad_bytes / (args.network_gbytes * 1e9)
    return compute + reduce


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peak-tflops", type=float, default=156.0, help="per GPU (A100 TF32: 156)")
    ap.add_argument("--utilisation", type=float, default=0.4, help="share of the peak reached")
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--nvlink-gbytes", type=float, default=230.0, help="all-reduce GB/s in a node")
    ap.add_argument(
        "--network-gbytes", type=float, default=25.0, help="GB/s between nodes (200 Gb/s)"
    )
    ap.add_argument("--windows-per-gpu", type=int, default=TrainConfig().batch_size // 8)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    effective = args.peak_tflops * args.utilisation
    library = []
    for cfg in (TeacherConfig.small(), TeacherConfig.paper()):
        row = teacher_gflops(cfg)
        song_s = row["gflop_per_stereo_second"] * SONG_S / 1e3 / effective
        row["gpu_s_per_4min_song"] = round(song_s, 4)
        row["songs_per_min"] = {n: round(60 * n / song_s, 1) for n in GPUS}
        library.append(row)
    lm = lm_step(LMConfig.named("paper"), args.windows_per_gpu)
    steps = {n: step_seconds(lm["tflop_per_gpu_step"], lm["parameters"], n, args) for n in GPUS}
    lm["step_s"] = {n: round(t, 3) for n, t in steps.items()}
    lm["windows_per_s"] = {n: round(n * args.windows_per_gpu / t, 1) for n, t in steps.items()}
    result = {
        "assumptions": vars(args) | {"json": None, "song_s": SONG_S},
        "library": library,
        "lm_paper_training": lm,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()

"""Arithmetic per second of audio of the teacher configs and of HTDemucs (docs/teacher-report.md).

    .venv/bin/python scripts/teacher_flops.py [--json docs/teacher-report/flops.json]

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add; the
networks only, the STFTs excluded) on meta tensors, so nothing is computed: one 6-s window of
the teacher (a stereo teacher takes both channels at once, a mono one runs twice) and one 10-s
segment of HTDemucs (its default), scaled to one second of stereo audio. HTDemucs needs the
``demucs`` package (it is skipped without it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from engine.constants import MODEL_RATE
from engine.models.roformer import BandSplitRoformer, TeacherConfig, count_parameters


def teacher_gflops(cfg: TeacherConfig, seconds: float = 6.0) -> dict[str, Any]:
    frames = round(seconds * MODEL_RATE / cfg.hop)
    with torch.device("meta"):
        model = BandSplitRoformer(cfg).eval()
        ri = torch.empty(1, 2 * cfg.channels, cfg.n_bins, frames)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(ri)
    runs = 2 // cfg.channels  # a mono teacher runs once per channel of a stereo song
    return {
        "config": cfg.name,
        "channels": cfg.channels,
        "parameters": count_parameters(model),
        "gflop_per_stereo_second": round(counter.get_total_flops() * runs / seconds / 1e9, 3),
    }


def htdemucs_gflops(seconds: float = 10.0) -> dict[str, Any] | None:
    try:
        from demucs.htdemucs import HTDemucs
    except ImportError:
        return None
    rate = 44_100
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], samplerate=rate).eval()
    x = torch.zeros(1, 2, round(seconds * rate))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return {
        "config": "htdemucs (default constructor)",
        "channels": 2,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflop_per_stereo_second": round(counter.get_total_flops() / seconds / 1e9, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = [
        teacher_gflops(TeacherConfig.small()),
        teacher_gflops(TeacherConfig.small(channels=1)),
        teacher_gflops(TeacherConfig.paper()),
    ]
    peer = htdemucs_gflops()
    if peer is not None:
        rows.append(peer)
    text = json.dumps(rows, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

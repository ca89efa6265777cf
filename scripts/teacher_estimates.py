"""Separate every song of a MUSDB-layout set with a trained teacher (torch) and write estimates
``OUT/<song>/<stem>.wav`` for ``stemtok eval --estimates teacher=OUT``.

    .venv/bin/python scripts/teacher_estimates.py data/synth-full --split test \
        --teacher runs/teacher-small --out runs/teacher-estimates
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from engine.data.musdb import list_tracks, write_track
from engine.models.roformer import load_teacher
from engine.training.teacher import separate_song


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("set", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_teacher(args.teacher)
    total_audio = total_wall = 0.0
    for track in list_tracks(args.set, args.split):
        audio = track.load(["mixture"])
        t0 = time.perf_counter()
        stems = separate_song(model, audio.stems["mixture"], audio.rate)
        wall = time.perf_counter() - t0
        write_track(args.out / track.name, stems, audio.rate, bit_depth="32f", overwrite=True)
        total_audio += audio.duration
        total_wall += wall
        print(f"{track.name}: {audio.duration:.1f} s in {wall:.1f} s")
    print(f"real-time factor {total_wall / max(total_audio, 1e-9):.3f} ({args.threads} threads)")


if __name__ == "__main__":
    main()

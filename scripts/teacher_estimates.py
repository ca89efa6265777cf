"""Separate every song of a MUSDB-layout set with a trained teacher (torch) and write estimates
``OUT/<song>/<stem>.wav`` for ``stemtok eval --estimates teacher=OUT``.

    .venv/bin/python scripts/teacher_estimates.py data/synth-full --split test \
        --teacher runs/teacher-small --out runs/teacher-estimates

``--teacher`` is a run, a ``teacher.pt`` folder or an exported teacher (its weights read back
from the graph); ``--max-seconds 20`` separates the first 20 s of each song only (for ``stemtok
eval --max-seconds 20``); ``--window-seconds 3 --fade-seconds 0.75`` are the windows of the
shipped runtime.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from engine.data.musdb import list_tracks, write_track
from engine.training.teacher import separate_song
from export.teacher import load_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("set", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, help="separate only the first S s of each song")
    ap.add_argument("--window-seconds", type=float, default=6.0)
    ap.add_argument("--fade-seconds", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_source(args.teacher)[0]
    total_audio = total_wall = 0.0
    for track in list_tracks(args.set, args.split):
        audio = track.load(["mixture"], max_seconds=args.max_seconds)
        t0 = time.perf_counter()
        mix = audio.stems["mixture"]
        stems = separate_song(model, mix, audio.rate, args.window_seconds, args.fade_seconds)
        wall = time.perf_counter() - t0
        write_track(args.out / track.name, stems, audio.rate, bit_depth="32f", overwrite=True)
        total_audio += audio.duration
        total_wall += wall
        print(f"{track.name}: {audio.duration:.1f} s in {wall:.1f} s")
    print(f"real-time factor {total_wall / max(total_audio, 1e-9):.3f} ({args.threads} threads)")


if __name__ == "__main__":
    main()

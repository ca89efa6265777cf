"""``stemtok train teacher``: train the discriminative band-split RoFormer on a stem set.

``register(tsub)`` adds the ``teacher`` subcommand to ``stemtok train``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.commands.train_common import add_run_options, prepare_run, summary
from engine.errors import StemtokError

EXAMPLES = """\
Examples:
  stemtok train teacher --data data/synth-full --out runs/teacher --session-minutes 60
  stemtok train teacher --data data/synth-full --out runs/teacher   (resumes, runs until stopped)
  stemtok train teacher --data data/synth-full --data data/synth-s1 --out runs/teacher \\
      --init resources/models/teacher        (two sets; start from the shipped teacher)
  stemtok train teacher --data data/synth-full --data data/pseudo --data-weights 1,1 \
      --data-remix 0.5,1 --init resources/models/teacher --lr 3e-4 --out runs/self-train
                 (self-training: half the crops pseudo-labelled songs, always remixed)
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected numbers separated by commas"
        ) from None


def register(tsub: argparse._SubParsersAction[Any]) -> None:
    p = tsub.add_parser(
        "teacher",
        help="train the discriminative teacher separator (band-split RoFormer)",
        description="Train the teacher on DATA (MUSDB layout: DATA/train/<song>/<stem>.wav; "
        "DATA/valid is scored by SI-SDR). Checkpoints go to OUT/checkpoints every few minutes; "
        "OUT/train.log and OUT/metrics.jsonl hold the progress (with the CPU hours spent); the "
        "best model on the validation set so far is kept in OUT/best; the run ends by writing "
        "OUT/teacher.pt. The same command again resumes, and songs added to DATA while it runs "
        "are picked up. The default learning-rate schedule restarts in cycles, so a run can go "
        "on for days; stop it with Ctrl-C or kill (it writes a checkpoint first).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="small", choices=("small", "paper"))
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        action="append",
        help="stem set (MUSDB layout); give it again to train on several sets "
        "(the first one's valid split is the validation set)",
    )
    p.add_argument(
        "--init",
        type=Path,
        metavar="FOLDER",
        help="start a new run from these weights: an exported teacher "
        "(resources/models/teacher), a teacher.pt folder or a run",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument(
        "--minutes",
        type=float,
        help="stop after this much training time, summed over resumes (with "
        "--schedule cosine, the schedule spans it)",
    )
    p.add_argument(
        "--session-minutes",
        type=float,
        help="stop this invocation after this many minutes; the next one carries on",
    )
    p.add_argument(
        "--schedule",
        choices=("restarts", "cosine"),
        help="restarts (default): cosine cycles of --cycle-steps, each peak lower; "
        "cosine: one cosine over --minutes / --max-steps",
    )
    p.add_argument("--cycle-steps", type=int, help="steps per learning-rate cycle (default 4000)")
    p.add_argument(
        "--mp3-prob",
        type=float,
        help="share of examples made lossy by an MP3 round trip (default 0)",
    )
    p.add_argument(
        "--level-db",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="one gain per example drawn in [LOW, HIGH] dB, for songs from quiet to mastered "
        "(default 0 0)",
    )
    p.add_argument(
        "--data-weights",
        type=_floats,
        metavar="W1,W2,...",
        help="share of the crops from each --data set, in their order (default: by length)",
    )
    p.add_argument(
        "--data-remix",
        type=_floats,
        metavar="P1,P2,...",
        help="remix probability of each crop by its --data set, each crop on its own draw "
        "(default: the whole batch remixed with probability 0.5)",
    )
    p.add_argument("--batch-size", type=int, help="crops per step (default 4)")
    p.add_argument("--crop-seconds", type=float, help="crop length (default 3)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument(
        "--channels",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: a stereo teacher (default); 1: mono, each channel on its own",
    )
    p.add_argument(
        "--compressed-weight",
        type=float,
        help="weight of the compressed-spectrum L1 term (default 0: off)",
    )
    add_run_options(p, threads=2)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for data in args.data:
        prepare_run(args, data, "data")
    from engine.models.teacher_config import TeacherConfig, TeacherTrainConfig
    from engine.training.common import with_overrides
    from engine.training.teacher import train_teacher

    tcfg = with_overrides(
        TeacherTrainConfig(),
        max_steps=args.max_steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        crop_seconds=args.crop_seconds,
        lr=args.lr,
        seed=args.seed,
        compressed_weight=args.compressed_weight,
        schedule=args.schedule,
        cycle_steps=args.cycle_steps,
        mp3_prob=args.mp3_prob,
        level_db=tuple(args.level_db) if args.level_db else None,
        set_weights=args.data_weights,
        set_remix=args.data_remix,
    )
    cfg = replace(TeacherConfig.named(args.config), channels=args.channels)
    init = None
    if args.init is not None:
        from export.teacher import load_source

        start, _ = load_source(args.init)
        if start.cfg != cfg:
            raise StemtokError(
                f"{args.init}: a teacher of another config than --config "
                f"{args.config} --channels {args.channels}"
            )
        init = start.state_dict()
    rec = train_teacher(
        cfg,
        tcfg,
        args.data,
        args.out,
        device=args.device,
        resume=not args.fresh,
        progress=not args.quiet,
        echo=None if args.quiet else sys.stderr,
        init=init,
        session_minutes=args.session_minutes,
    )
    summary(f"{args.out}: step {rec.get('step')}, loss {rec.get('loss', float('nan')):.4f}")
    return 0

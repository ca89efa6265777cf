"""What every ``stemtok train`` subcommand shares: its run options and the checks before a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import StemtokError, install_hint


def add_run_options(p: argparse.ArgumentParser, threads: int) -> None:
    """Options every trainer has: seed, device, threads, resume/fresh, quiet."""
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument(
        "--threads", type=int, default=threads, help=f"CPU threads for torch (default {threads})"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="require a checkpoint and continue")
    group.add_argument("--fresh", action="store_true", help="ignore checkpoints in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar or echoed log lines")


def prepare_run(args: argparse.Namespace, data: Path, what: str) -> None:
    """Checks shared by every trainer: torch importable, ``--threads``, the input folder
    ``data`` (a ``what`` folder) and ``--resume`` with a checkpoint in ``--out``; sets threads."""
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise StemtokError(f"training needs torch ({install_hint('train')})") from exc
    from engine.training.common import latest_checkpoint

    if args.threads < 1:
        raise StemtokError("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    if not data.is_dir():
        raise StemtokError(f"{data}: no such {what} folder")
    if args.resume and latest_checkpoint(args.out) is None:
        raise StemtokError(f"{args.out}: --resume given but there is no checkpoint to resume")


def summary(line: str) -> None:
    """Print the run's closing line on stdout (once, from rank 0, under ``torchrun``)."""
    from engine.training.common import process_group

    if process_group().writer:
        print(line)

"""``stemtok train``: train the codec, the language model or the teacher.

Each model is a subcommand. ``codec`` lives here. ``lm`` and ``teacher`` are registered by their
own modules through a function ``register_cli(subparsers)``, looked up first in
``app.commands.train_<name>`` and then in ``engine.training.<name>``; while neither exists (or
has it) the subcommand says honestly that it is not available yet.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import NotReadyError, StemtokError, install_hint

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[Any]

#: subcommand -> (issue, one-line help) for trainers whose CLI lives in their own module.
EXTERNAL: dict[str, tuple[str, str]] = {
    "lm": ("#6", "train the separation language model on stored tokens"),
    "teacher": ("#8", "train the discriminative teacher separator"),
}

EXAMPLES = """\
Examples:
  stemtok train codec --config small --data data/synth --out runs/codec-small --minutes 60
  stemtok train codec --config small --data data/synth --out runs/codec-small   (resumes)
"""


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "train",
        help="train the codec, the language model or the teacher",
        description="Train stemtok's models. Runs are resumable: run the same command again.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = p.add_subparsers(dest="train_command", metavar="MODEL")
    register_codec(tsub)
    for name, (issue, helptext) in EXTERNAL.items():
        _register_external(tsub, name, issue, helptext)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _register_external(tsub: Subparsers, name: str, issue: str, helptext: str) -> None:
    modules = (f"app.commands.train_{name}", f"engine.training.{name}")
    register_cli = next(filter(None, map(_find_register, modules)), None)
    if register_cli is not None:
        register_cli(tsub)
        return
    p = tsub.add_parser(name, help=f"{helptext} [not ready: issue {issue}]")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def not_ready(args: argparse.Namespace) -> int:
        raise NotReadyError(f"'stemtok train {name}' is not available yet (issue {issue})")

    p.set_defaults(func=not_ready)


def _find_register(module: str) -> Callable[[Subparsers], None] | None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise
    fn = getattr(mod, "register_cli", None)
    return fn if callable(fn) else None


def register_codec(tsub: Subparsers) -> None:
    p = tsub.add_parser(
        "codec",
        help="train the dual-path codec (tokenizer + decoders)",
        description="Train the codec on a set in the MUSDB layout (DIR/train/<song>/<stem>.wav; "
        "DIR/valid is used for validation, DIR/test is never read). Checkpoints go to "
        "OUT/checkpoints every few minutes; OUT/train.log and OUT/metrics.jsonl hold losses and "
        "codebook usage; the run ends by writing OUT/codec.pt and OUT/codec_config.json. Running "
        "the same command again resumes from the newest checkpoint.",
    )
    p.add_argument("--config", choices=("small", "paper"), default="small", help="model size")
    p.add_argument("--data", type=Path, required=True, help="training set (MUSDB layout)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (default 100000)")
    p.add_argument("--minutes", type=float, help="stop after this much training time")
    p.add_argument("--batch-size", type=int, help="crops per step (default 8)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument(
        "--semantic", choices=("learned", "crepe"), help="semantic path (default learned)"
    )
    p.add_argument(
        "--snr-weight",
        type=float,
        help="weight of the aligned decoder's negative-SNR loss (default 0.05)",
    )
    add_run_options(p, threads=1)
    p.set_defaults(func=run_codec)


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


def run_codec(args: argparse.Namespace) -> int:
    prepare_run(args, args.data, "data")
    from engine.models.codec_config import CodecConfig
    from engine.training.codec import CodecTrainConfig, train_codec, with_overrides

    cfg = CodecConfig.named(args.config)
    if args.semantic:
        cfg = type(cfg).from_dict({**cfg.__dict__, "semantic": args.semantic})
    tcfg = with_overrides(
        CodecTrainConfig(),
        max_steps=args.max_steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        w_snr=args.snr_weight,
    )
    rec = train_codec(
        cfg,
        tcfg,
        args.data,
        args.out,
        device=args.device,
        resume=not args.fresh,
        progress=not args.quiet,
        echo=None if args.quiet else sys.stderr,
    )
    print(f"{args.out}: step {rec.get('step')}, codec written to {args.out / 'codec.pt'}")
    return 0

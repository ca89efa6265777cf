"""``stemtok train lm``: train the separation LM on stored codec tokens.

``register(tsub)`` adds the ``lm`` subcommand to the subparsers of ``stemtok train``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.commands.train_common import add_run_options, prepare_run, summary
from engine.errors import StemtokError

if TYPE_CHECKING:
    from engine.models.lm_config import LMConfig, TrainConfig

EXAMPLES = """\
Examples:
  stemtok train lm --config small --tokens data/tokens-small --out runs/lm-small --minutes 60
  stemtok train lm --config small --tokens data/tokens-small --out runs/lm-small   (resumes)
  stemtok train lm --config a3 --tokens data/tokens-small --out runs/lm-a3 --max-steps 500

Configs: small (trains on a CPU), paper (the paper's sizes), a1 (frozen random-init encoder),
a2 (steep RVQ loss weights), a3 (parallel decoding, no cross-track context); paper-a1 etc.
apply an ablation to the paper sizes.
"""


def register(tsub: argparse._SubParsersAction[Any]) -> None:
    p = tsub.add_parser(
        "lm",
        help="train the separation language model on stored tokens",
        description="Train the LM on TOKDIR (made by 'stemtok data tokenize': TOKDIR/tokens.json "
        "and TOKDIR/<split>/<song>.npz). The train split is trained on, valid is scored "
        "(loss, next-token accuracy per RVQ level). Checkpoints go to OUT/checkpoints every few "
        "minutes; OUT/train.log and OUT/metrics.jsonl hold the progress; the run ends by "
        "writing OUT/lm.pt and OUT/eval.json. The same command again resumes.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default="small",
        help="small, paper, a1, a2, a3, paper-a1.. or an lm_config.json (default small)",
    )
    p.add_argument("--tokens", type=Path, required=True, help="token folder (TOKDIR)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--minutes", type=float, help="stop after this much training time")
    p.add_argument("--batch-size", type=int, help="crops per step (small 8, paper 24)")
    add_run_options(p, threads=2)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    prepare_run(args, args.tokens, "token")
    from engine.training.lm import train_lm

    cfg, tcfg = configs(args.config)
    overrides = {"batch_size": args.batch_size, "seed": args.seed}
    tcfg = dataclasses.replace(tcfg, **{k: v for k, v in overrides.items() if v is not None})
    final = train_lm(
        cfg,
        tcfg,
        args.tokens,
        args.out,
        max_steps=args.max_steps,
        minutes=args.minutes,
        device=args.device,
        resume=not args.fresh,
        progress=not args.quiet,
        echo=None if args.quiet else sys.stderr,
    )
    acc = ", ".join(f"{a:.2f}" for a in final.get("level_acc", []))
    summary(f"{args.out}: step {final.get('step')}, valid next-token accuracy per level [{acc}]")
    return 0


def configs(name: str) -> tuple[LMConfig, TrainConfig]:
    """Named configs, or ``lm_config.json`` (with ``lm_train_config.json`` beside it, if any;
    otherwise the small training recipe)."""
    from engine.models.lm_config import LMConfig, TrainConfig, named

    path = Path(name)
    try:
        if path.suffix != ".json":
            return named(name)
        cfg = LMConfig.from_json(json.loads(path.read_text()))
        tpath = path.with_name("lm_train_config.json")
        tcfg = TrainConfig.from_json(json.loads(tpath.read_text())) if tpath.is_file() else None
        return cfg, tcfg or TrainConfig.named("small")
    except (OSError, ValueError, TypeError) as exc:
        raise StemtokError(f"--config {name}: {exc}") from exc

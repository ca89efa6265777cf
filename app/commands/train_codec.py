"""``stemtok train codec``: train the dual-path codec on a stem set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.commands.train_common import add_run_options, prepare_run, summary
from engine.errors import StemtokError


def register(tsub: argparse._SubParsersAction[Any]) -> None:
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
    p.add_argument(
        "--init", type=Path, metavar="CODEC", help="start a new run from this codec's weights"
    )
    p.add_argument(
        "--prior-teacher",
        type=Path,
        metavar="TEACHER",
        help="train only the aligned decoder of --init, to refine this exported teacher's "
        "estimates given the stem codes (what the default model runs)",
    )
    p.add_argument(
        "--generated-tokens",
        type=Path,
        metavar="MODEL",
        help="with --prior-teacher: half of each batch gets the codes this exported model's LM "
        "writes for training crops (what the decoder is given at run time)",
    )
    p.add_argument(
        "--max-substitution",
        type=float,
        help="largest share of codes the aligned decoder sees replaced at random (default 0.3)",
    )
    add_run_options(p, threads=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prepare_run(args, args.data, "data")
    from engine.models.codec_config import CodecConfig, CodecTrainConfig
    from engine.training.codec import train_codec
    from engine.training.common import with_overrides

    if args.prior_teacher is not None and args.init is None:
        raise StemtokError("--prior-teacher needs --init (the codec whose tokens the LM writes)")
    if args.generated_tokens is not None and args.prior_teacher is None:
        raise StemtokError("--generated-tokens trains a refining decoder: give --prior-teacher")
    cfg = CodecConfig.named(args.config)
    if args.init is not None:
        cfg = CodecConfig.load(args.init)
    if args.prior_teacher is not None:
        cfg = type(cfg).from_dict({**cfg.__dict__, "al_prior": True})
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
        max_substitution=args.max_substitution,
        init=None if args.init is None else str(args.init),
        prior_teacher=None if args.prior_teacher is None else str(args.prior_teacher),
        generated_model=None if args.generated_tokens is None else str(args.generated_tokens),
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
    summary(f"{args.out}: step {rec.get('step')}, codec written to {args.out / 'codec.pt'}")
    return 0

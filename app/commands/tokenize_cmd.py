"""``stemtok data tokenize``: encode a stem set with a trained codec, once, for the LM.

The ``data`` command (app/commands/data.py) calls :func:`register` with its subparsers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.errors import StemtokError, install_hint


def register(dsub: argparse._SubParsersAction[Any]) -> None:
    s = dsub.add_parser(
        "tokenize",
        help="encode a set with a trained codec (tokens for the language model)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Encode every song of SET (MUSDB layout) with the codec in CODEC and store "
        "TOKDIR/<split>/<song>[.v<j>].npz (codes int16 [4, 2, K, T], mixture log-mel float16 "
        "[120, 4T]) plus TOKDIR/tokens.json. Variant 0 is the song as it is; variants 1.. are "
        "augmented (per-stem gain, polarity, 7-band EQ). Running it again skips finished files.",
    )
    s.add_argument("set", type=Path, metavar="SET", help="stem set (MUSDB layout)")
    s.add_argument(
        "--codec", type=Path, required=True, help="codec folder (codec.pt + codec_config.json)"
    )
    s.add_argument("--out", type=Path, required=True, metavar="TOKDIR", help="output folder")
    s.add_argument("--variants", type=int, default=1, help="copies per song (default 1)")
    s.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    s.add_argument("--splits", nargs="+", help="only these splits (default: all)")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    s.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_tokenize)


def run_tokenize(args: argparse.Namespace) -> int:
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise StemtokError(f"tokenizing needs torch ({install_hint('train')})") from exc
    from engine.data.tokenize import tokenize_set
    from engine.training.common import select_device

    torch.set_num_threads(max(1, args.threads))
    bar = _bar(args.quiet)
    try:
        manifest = tokenize_set(
            args.set,
            args.codec,
            args.out,
            variants=args.variants,
            seed=args.seed,
            splits=args.splits,
            device=str(select_device(args.device)),
            progress=None if bar is None else lambda d, t: _advance(bar, d, t),
        )
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.out}: {len(manifest['songs'])} token files")
    return 0


def _bar(quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit="file", desc="tokenizing", file=sys.stderr)


def _advance(bar: Any, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)

"""``stemtok train``: train the codec, the language model or the teacher.

Each model is a subcommand in its own module, ``app/commands/train_<model>.py``, with a
``register(subparsers)``; the options they share are in :mod:`app.commands.train_common`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.commands import train_codec, train_lm, train_teacher

EXAMPLES = """\
Examples:
  stemtok train codec --config small --data data/synth --out runs/codec-small --minutes 60
  stemtok train codec --config small --data data/synth --out runs/codec-small   (resumes)
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "train",
        help="train the codec, the language model or the teacher",
        description="Train stemtok's models. Runs are resumable: run the same command again.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = p.add_subparsers(dest="train_command", metavar="MODEL")
    for trainer in (train_codec, train_lm, train_teacher):
        trainer.register(tsub)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2

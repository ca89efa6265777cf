"""Commands that are not ready yet: each says so honestly and names the issue that brings it."""

from __future__ import annotations

import argparse
from typing import Any

from engine.errors import NotReadyError

#: command -> (one-line help, issue that delivers it)
PENDING: dict[str, tuple[str, str]] = {}


def _not_ready(args: argparse.Namespace) -> int:
    issue = PENDING[args.command][1]
    raise NotReadyError(
        f"'stemtok {args.command}' is not available yet: it lands with issue {issue}"
    )


def register(sub: argparse._SubParsersAction[Any], skip: set[str]) -> None:
    for name, (helptext, issue) in PENDING.items():
        if name in skip:
            continue
        p = sub.add_parser(
            name,
            help=f"{helptext} [not ready: issue {issue}]",
            description=f"{helptext}. Not available yet: lands with issue {issue}.",
        )
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_not_ready)

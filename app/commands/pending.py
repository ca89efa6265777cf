"""Commands that are not ready yet: each says so honestly and names the issue that brings it."""

from __future__ import annotations

import argparse
from typing import Any

from engine.errors import NotReadyError

#: command -> (one-line help, issue that delivers it)
PENDING: dict[str, tuple[str, str]] = {
    "separate": ("split songs into vocals, drums, bass and other", "#7 (ONNX runtime)"),
    "karaoke": ("make an instrumental (optionally with a guide vocal)", "#7 (ONNX runtime)"),
    "editor": ("open the stem editor", "#9 (stem editor)"),
    "bridge": ("serve separation to DAWs on a local socket", "#10 (DAW bridge)"),
    "data": ("make and inspect training data", "#3 (data factory)"),
    "train": ("train the codec, the language model or the teacher", "#5/#6/#8"),
    "export": ("export a trained model to ONNX", "#7 (ONNX runtime)"),
    "eval": ("score separators on a stem folder", "#4 (evaluation harness)"),
    "bench": ("measure speed and memory", "#7 (ONNX runtime)"),
}


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

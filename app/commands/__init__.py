"""One module per ``stemtok`` command (``app/commands/<name>.py``); each exposes
``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

#: Every command, in the order ``stemtok --help`` lists them.
COMMANDS = (
    "info",
    "data",
    "train",
    "eval",
    "export",
    "separate",
    "library",
    "karaoke",
    "bench",
    "editor",
    "bridge",
    "send",
    "daw",
)


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    for name in COMMANDS:
        importlib.import_module(f"app.commands.{name}").register(sub)

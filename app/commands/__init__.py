"""One module per ``stemtok`` command; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Every command's module (each issue that brought a command replaced its "not ready" stub).
_MODULES = (
    "info",
    "data",
    "train",
    "eval",
    "export",
    "separate",
    "karaoke",
    "bench",
    "editor",
    "bridge",
    "send",
)


def register_all(sub: argparse._SubParsersAction[Any]) -> None:
    for name in _MODULES:
        importlib.import_module(f"app.commands.{name}").register(sub)

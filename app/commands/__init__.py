"""One module per ``stemtok`` command; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Commands whose modules exist; the others are registered by ``pending`` until they land.
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
    from app.commands import pending

    ready: set[str] = set()
    for name in _MODULES:
        try:
            module = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"app.commands.{name}":
                raise
            continue
        module.register(sub)
        ready.add(name)
    pending.register(sub, skip=ready)

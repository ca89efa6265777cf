"""Shared fixtures. Tests never write into the source tree: everything goes under tmp_path."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

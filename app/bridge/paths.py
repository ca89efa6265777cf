"""Where the bridge keeps its token, its Unix socket and its state file (standard library only).

::

    $XDG_CONFIG_HOME/stemtok/bridge-token     (default ~/.config/stemtok/bridge-token)   0600
    $XDG_RUNTIME_DIR/stemtok/bridge.sock      (fallback /tmp/stemtok-<uid>/bridge.sock)  0600
    $XDG_RUNTIME_DIR/stemtok/bridge.json      pid, port and socket of the running server 0600

Directories stemtok creates are 0700; a runtime directory that is not ours, is a symlink or is
open to others is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from engine.atomic import write_json

DEFAULT_PORT = 47321
APP = "stemtok"
#: ``sun_path`` holds 108 bytes on Linux, 104 on macOS: keep one for the terminating NUL.
MAX_SOCKET_PATH = 103


class PathError(OSError):
    """A bridge path is unsafe or unusable (message says why)."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP


def token_path() -> Path:
    return config_dir() / "bridge-token"


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/stemtok``, or ``/tmp/stemtok-<uid>`` when it is unset."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / APP
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"{APP}-{uid}"


def default_socket_path() -> Path:
    return runtime_dir() / "bridge.sock"


def state_path() -> Path:
    return runtime_dir() / "bridge.json"


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if needed and check that it is a real directory owned by us and
    closed to group and others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(f"{path}: exists and is not a directory")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PathError(f"{path}: belongs to another user")
    if st.st_mode & 0o077:
        raise PathError(f"{path}: is open to other users (chmod 700 it)")
    return path


def check_socket_path(path: Path) -> Path:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise PathError(f"{path}: too long for a Unix socket ({MAX_SOCKET_PATH} bytes at most)")
    return path


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state file atomically with mode 0600."""
    write_json(path, state, indent=None, mode=0o600)


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    """The running server's state (``pid``, ``port``, ``socket``, ``version``), or None."""
    try:
        data = json.loads((path or state_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

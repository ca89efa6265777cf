"""Unix-socket files of the bridge: bind user-only, clear a dead server's leftovers."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from app.bridge.paths import PathError


def clear_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead server; refuse a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise PathError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise PathError("another bridge is listening there ('stemtok bridge --status')")


def bind_private(path: Path) -> socket.socket:
    """A Unix socket bound at ``path`` with mode 0600 from the start (umask while binding)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock

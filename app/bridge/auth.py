"""The bridge token: 32 random bytes (URL-safe base64) in a user-only file (standard library only).

The server creates it on first start; clients read it. The file is created 0600 and atomically
(written to a private temporary file, then hard-linked into place, so a concurrent first start
either wins or reads the winner's token); a token file that group or others can read is refused.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import secrets
import stat
import tempfile
from pathlib import Path

from app.bridge.paths import token_path

_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,128}")


class TokenError(OSError):
    """The token file is missing, unsafe or corrupt (message says why)."""


def read_token(path: Path | None = None) -> str:
    """The token in ``path`` (default :func:`~app.bridge.paths.token_path`)."""
    p = path or token_path()
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise TokenError(
            f"{p}: no bridge token (start 'stemtok bridge' once to create it)"
        ) from None
    except OSError as exc:
        raise TokenError(f"{p}: cannot read the bridge token ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise TokenError(f"{p}: is not a regular file")
        if os.name == "posix" and st.st_mode & 0o077:
            raise TokenError(f"{p}: other users can read the bridge token (chmod 600 it)")
        text = f.read(256).decode("ascii", "replace").strip()
    if not _TOKEN.fullmatch(text):
        raise TokenError(f"{p}: does not hold a bridge token (delete it to make a new one)")
    return text


def load_or_create_token(path: Path | None = None) -> str:
    """Read the token, creating the file (0600, atomically) when there is none."""
    p = path or token_path()
    if not os.path.lexists(p):
        _create(p, secrets.token_urlsafe(32))
    return read_token(p)


def _create(p: Path, token: str) -> None:
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bridge-token.", dir=p.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: keep theirs
            os.link(tmp, p)
    finally:
        Path(tmp).unlink(missing_ok=True)


def same_token(given: object, expected: str) -> bool:
    """Constant-time comparison; anything that is not a string is wrong."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))

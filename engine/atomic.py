"""Atomic file writes: a temporary file beside the target, renamed over it with ``os.replace``.

A reader sees the old file or the new one, never half of one, and a write that fails leaves the
target as it was (the temporary file is removed). Standard library only (numpy is imported by
:func:`save_npy` alone), so the DAW-side bridge modules can use it too. A folder of files is
written the same way: into a hidden folder beside it, renamed into place when complete
(:func:`replace_folder`).

::

    write_json(folder / "model_config.json", config)
    with atomic_path(folder / "codec.pt") as tmp:     # for writers that want a path
        torch.save(state, tmp)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]


def _new_file_mode() -> int:
    """The mode a plainly created file gets: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (created if missing) to write to; renamed onto
    ``path`` when the block ends without an error, removed when it raises.

    The temporary name is hidden (``.NAME.XXXX.SUFFIX``) and keeps the suffix, so writers that
    go by it (numpy, audio encoders) pick the right format. ``mode``: permission bits of the
    result; by default those of the file it replaces, or a new file's.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is None:
            mode = p.stat().st_mode & 0o7777 if p.exists() else _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text(path: PathLike, text: str, *, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), mode=mode)


def write_json(
    path: PathLike, obj: Any, *, indent: int | None = 1, mode: int | None = None
) -> Path:
    """Write ``obj`` as JSON (and a final newline) to ``path`` atomically; ``indent=None`` is
    one line. Nothing is written when ``obj`` cannot be encoded."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n", mode=mode)


def save_npy(path: PathLike, array: Any, *, mode: int | None = None) -> Path:
    """``numpy.save`` of ``array`` to ``path`` atomically (no ``.npy`` is appended)."""
    import numpy as np  # only this writer needs numpy

    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)


def replace_folder(part: PathLike, folder: PathLike) -> Path:
    """Rename the finished folder ``part`` (in ``folder``'s parent) to ``folder``; a folder
    already there is renamed aside first and removed after, so ``folder`` is only ever absent
    or whole."""
    part, folder = Path(part), Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)  # left by a replace that was killed halfway
    if folder.exists():
        os.replace(folder, old)
    os.replace(part, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder

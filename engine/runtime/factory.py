"""Open the right separator for a model folder or name.

``open_separator(model)`` reads the folder's ``model_config.json`` and returns an
:class:`~engine.runtime.lm_separator.LMSeparator` (the generative token model: no ``kind``, or
``"kind": "lm"``) or a :class:`~engine.runtime.teacher.TeacherSeparator` (``"kind": "teacher"``).
Both subclass :class:`~engine.runtime.segments.SegmentSeparator`, so both keep the
:class:`~engine.runtime.separator.StreamingSeparator` contract: ``separate(audio | path, rate, *,
stems, mode, seed, progress, cancel, confidence) -> Stems`` and ``stream(source, ...)``. Model
names are resolved by :func:`engine.runtime.model.model_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import StemtokError
from engine.runtime.lm_separator import LMSeparator
from engine.runtime.model import model_dir, read_config
from engine.runtime.segments import SegmentSeparator
from engine.runtime.teacher import KIND as TEACHER_KIND
from engine.runtime.teacher import TeacherSeparator

_LM_KINDS = (None, "lm", "generative")


def model_kind(folder: str | os.PathLike[str]) -> str:
    """``"lm"`` or ``"teacher"``, from the folder's ``model_config.json``."""
    kind = read_config(Path(folder), verify=False).get("kind")
    if kind in _LM_KINDS:
        return "lm"
    if kind == TEACHER_KIND:
        return TEACHER_KIND
    raise StemtokError(
        f"{folder}: unknown model kind {kind!r} (lm or teacher); is this "
        "stemtok version too old for it?"
    )


def open_separator(
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    threads: int | None = None,
    **kwargs: Any,
) -> SegmentSeparator:
    """The separator for ``model`` (a name or folder; ``None`` is the default model) on
    ``device``; ``kwargs`` (``batch``, ``segment_seconds``) go to its constructor."""
    folder = model_dir(model)
    if model_kind(folder) == TEACHER_KIND:
        return TeacherSeparator(folder, device=device, threads=threads, **kwargs)
    return LMSeparator(folder, device=device, threads=threads, **kwargs)

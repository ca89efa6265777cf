"""The one writer of stem files: block by block, as an :class:`~engine.outputs.OutputPlan` says,
atomically, and never clipping silently.

::

    blocks [S, C, n] ─ per stem: downmix / resample (the plan) ─ clip to full scale (integer
    and MP3 files; the peak is reported) ─ encode ─ hidden ".NAME.part.EXT" beside the target
    ─ commit(): renamed over the targets; discard(): removed, with the folders it made

``stemtok separate`` and ``stemtok library`` stream a song through it (:func:`separate_to_files`),
``stemtok karaoke``, ``stemtok send`` and the editor's export and karaoke write arrays with
:func:`write_arrays`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.audio import BLOCK_FRAMES, encode_block
from engine.errors import AudioError, StemtokError
from engine.outputs import Converter, OutputPlan
from engine.progress import FractionProgress

if TYPE_CHECKING:
    from engine.runtime.separator import Mode, StreamingSeparator
    from engine.runtime.sources import Source


class StemWriter:
    """One file per stem (``paths``: stem -> target, in the order of the blocks' stems).

    Use it as a context manager, or call :meth:`discard` when not committing: the temporary
    files, and folders this writer made, are then removed.
    """

    def __init__(self, paths: Mapping[str, Path], plan: OutputPlan, *, mp3_quality: str = "V0"):
        from pedalboard.io import AudioFile

        self.paths, self.plan = {s: Path(p) for s, p in paths.items()}, plan
        self.tmp = {s: p.with_name(f".{p.stem}.part{p.suffix}") for s, p in self.paths.items()}
        self.peaks: dict[str, float] = {}
        self.made = _make_folders({p.parent for p in self.paths.values()})
        self.convert = {s: Converter(plan) for s in self.paths}
        kwargs: dict[str, Any] = {"quality": mp3_quality} if plan.fmt == "mp3" else {}
        if plan.depth:
            kwargs["bit_depth"] = 32 if plan.depth == "32f" else int(plan.depth)
        self.files: dict[str, Any] = {}
        try:
            for stem, tmp in self.tmp.items():
                self.files[stem] = AudioFile(str(tmp), "w", plan.rate, plan.channels, **kwargs)
        except Exception as exc:  # an unwritable folder, a full disk: one line
            self.discard()
            raise AudioError(f"{self.paths[stem]}: cannot be written ({exc})") from None

    def __enter__(self) -> StemWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()

    def write(self, block: np.ndarray) -> None:
        """Stems ``[S, in_channels, n]`` at the input's rate, in the order of ``paths``."""
        for i, stem in enumerate(self.files):
            self._put(stem, self.convert[stem](block[i]))

    def _put(self, stem: str, x: np.ndarray) -> None:
        if x.size == 0:
            return
        if self.plan.clips:
            peak = float(np.abs(x).max())
            if peak > 1.0:
                self.peaks[stem] = max(self.peaks.get(stem, 0.0), peak)
                x = np.clip(x, -1.0, 1.0)
        self.files[stem].write(encode_block(x, self.plan.depth))

    def commit(self, overwrite: bool = False) -> list[str]:
        """Finish the files and rename them over their targets; returns one line per file whose
        peaks were clipped."""
        for stem, convert in self.convert.items():
            rest = convert.flush()
            if rest is not None:
                self._put(stem, rest)
        self._close()
        for stem, tmp in self.tmp.items():
            if self.paths[stem].exists() and not overwrite:
                raise StemtokError(f"{self.paths[stem]}: already exists (pass --overwrite)")
            tmp.replace(self.paths[stem])
        self.made = []  # they hold the files now
        return [
            f"{self.paths[s]}: peak {peak:.2f} clipped to full scale (only 32-bit float WAV "
            "keeps peaks above it)"
            for s, peak in self.peaks.items()
        ]

    def discard(self) -> None:
        """Close and remove what :meth:`commit` did not rename, and the folders made for it
        (a no-op after :meth:`commit`)."""
        self._close()
        for tmp in self.tmp.values():
            tmp.unlink(missing_ok=True)
        for folder in reversed(self.made):
            try:
                folder.rmdir()
            except OSError:  # no longer empty: someone else's files are in it
                continue
        self.made = []

    def _close(self) -> None:
        for f in self.files.values():
            if not f.closed:
                f.close()


def _make_folders(folders: set[Path]) -> list[Path]:
    """Create ``folders``; returns those created, parents first."""
    made: list[Path] = []
    for folder in sorted(folders):
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for p in reversed(missing):
            try:
                os.mkdir(p)
            except FileExistsError:  # made by another process meanwhile: not ours to remove
                continue
            made.append(p)
    return made


def write_arrays(
    paths: Mapping[str, Path],
    plan: OutputPlan,
    arrays: Sequence[np.ndarray],
    overwrite: bool = False,
    mp3_quality: str = "V0",
) -> list[str]:
    """Write whole arrays ``[in_channels, N]`` (one per path, in order) through a
    :class:`StemWriter`; returns its clipping lines."""
    n = max(a.shape[-1] for a in arrays)
    with StemWriter(paths, plan, mp3_quality=mp3_quality) as writer:
        for i in range(0, n, BLOCK_FRAMES):
            writer.write(np.stack([a[:, i : i + BLOCK_FRAMES] for a in arrays]))
        return writer.commit(overwrite)


def separate_to_files(
    sep: StreamingSeparator,
    source: Source,
    paths: Mapping[str, Path],
    plan: OutputPlan,
    *,
    mode: Mode = "aligned",
    seed: int | None = None,
    overwrite: bool = False,
    progress: FractionProgress | None = None,
) -> list[str]:
    """Stream ``source`` (a song) through ``sep`` into its stem files (``paths``, in
    :data:`~engine.constants.STEMS` order; memory does not grow with the song: blocks are written
    as they are finished); returns the writer's clipping lines. Nothing is left behind when it
    fails."""
    with StemWriter(paths, plan) as files:
        blocks = sep.stream(source, stems=list(paths), mode=mode, seed=seed, progress=progress)
        for block in blocks:
            files.write(block)
        return files.commit(overwrite)

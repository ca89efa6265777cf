"""Export: the chosen stems into a folder (for a DAW), or the current remix into one file, as WAV,
FLAC, AIFF or MP3 at the source rate and channels (MP3: stereo at up to 48 kHz, see
:mod:`engine.outputs`) and, where the format allows, the source bit depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from app.editor.mixer import Mixer
from engine.audio import BIT_DEPTHS
from engine.errors import StemtokError
from engine.outputs import FORMATS, OutputPlan, plan_output
from engine.stem_writer import write_arrays

What = Literal["stems", "remix"]
_DEPTH_OF = {"int8": "8", "uint8": "8", "int16": "16", "int24": "24"}


def source_depth(sample_format: str, fmt: str) -> str | None:
    """The bit depth ``fmt`` should be written at for a source stored as ``sample_format``: the
    same where ``fmt`` allows it, else the nearest deeper one (float and 32-bit: 32f WAV, 24 FLAC;
    MP3 sources, which decode to float: 24)."""
    if fmt == "mp3":
        return None
    allowed = BIT_DEPTHS[fmt]
    want = _DEPTH_OF.get(
        sample_format, "32f" if sample_format.startswith(("float", "int32")) else "24"
    )
    if want in allowed:
        return want
    order = ["8", "16", "24", "32f"]
    deeper = [d for d in order[order.index(want) :] if d in allowed]
    return deeper[0] if deeper else allowed[-1]


@dataclass(frozen=True)
class ExportPlan:
    """What to write: ``stems`` into the folder ``target``, or the ``remix`` into file ``target``."""

    what: What
    fmt: str
    target: Path
    stems: tuple[str, ...] = ()
    overwrite: bool = False

    def outputs(self, song: str) -> list[Path]:
        """The files this plan writes for a song named ``song``."""
        if self.what == "remix":
            return [self.target.with_suffix("." + self.fmt)]
        return [self.target / f"{song}-{name}.{self.fmt}" for name in self.stems]

    def check(self, song: str) -> None:
        if self.fmt not in FORMATS:
            raise StemtokError(f"cannot export '{self.fmt}' (choose {', '.join(FORMATS)})")
        if self.what == "stems" and not self.stems:
            raise StemtokError("choose at least one stem to export")
        taken = [p for p in self.outputs(song) if p.exists()]
        if taken and not self.overwrite:
            raise StemtokError(f"{taken[0]}: already exists (allow overwriting to replace it)")


def output_plan(fmt: str, channels: int, rate: int, sample_format: str) -> OutputPlan:
    """What a ``fmt`` export of a source of ``channels`` at ``rate`` stored as
    ``sample_format`` holds (its ``notice`` says what changes), or a one-line refusal."""
    return plan_output(fmt, channels, rate, source_depth(sample_format, fmt))


def run_export(
    plan: ExportPlan,
    song: str,
    stems: Mapping[str, np.ndarray],
    mixer: Mixer | None,
    rate: int,
    sample_format: str,
) -> tuple[list[Path], list[str]]:
    """Write ``plan``; returns the files written and warnings (a downmix, resampling, clipping)."""
    plan.check(song)
    jobs: Sequence[tuple[Path, np.ndarray]]
    if plan.what == "remix":
        if mixer is None:
            raise StemtokError("nothing to export yet: open a song first")
        jobs = [(plan.outputs(song)[0], mixer.render())]
    else:
        jobs = list(zip(plan.outputs(song), [stems[n] for n in plan.stems], strict=True))
    out = output_plan(plan.fmt, jobs[0][1].shape[0], rate, sample_format)
    warnings = [out.notice] if out.notice else []
    paths = {path.name: path for path, _ in jobs}
    warnings += write_arrays(paths, out, [audio for _, audio in jobs], plan.overwrite)
    return list(paths.values()), warnings

"""Export: the chosen stems into a folder (for a DAW), or the current remix into one file, as WAV,
FLAC or MP3 at the source rate and, where the format allows, the source bit depth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from app.editor.mixer import Mixer
from engine.audio import BIT_DEPTHS, write_audio
from engine.errors import StemtokError

FORMATS = ("wav", "flac", "mp3")
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


def _fit(audio: np.ndarray, depth: str | None) -> tuple[np.ndarray, bool]:
    """Clip to full scale unless the file keeps floats; also whether anything was clipped."""
    if depth == "32f":
        return audio, False
    over = bool(audio.size) and float(np.abs(audio).max()) > 1.0
    return (np.clip(audio, -1.0, 1.0) if over else audio), over


def run_export(
    plan: ExportPlan, song: str, stems: Mapping[str, np.ndarray], mixer: Mixer | None,
    rate: int, sample_format: str,
) -> tuple[list[Path], list[str]]:  # fmt: skip
    """Write ``plan``; returns the files written and warnings (e.g. clipping)."""
    plan.check(song)
    depth = source_depth(sample_format, plan.fmt)
    jobs: Sequence[tuple[Path, np.ndarray]]
    if plan.what == "remix":
        if mixer is None:
            raise StemtokError("nothing to export yet: open a song first")
        jobs = [(plan.outputs(song)[0], mixer.render())]
    else:
        jobs = list(zip(plan.outputs(song), [stems[n] for n in plan.stems], strict=True))
    written, warnings = [], []
    for path, audio in jobs:
        audio, clipped = _fit(audio, depth)
        if clipped:
            warnings.append(f"{path.name}: peaks above full scale were clipped")
        written.append(write_audio(path, audio, rate, bit_depth=depth, overwrite=plan.overwrite))
    return written, warnings

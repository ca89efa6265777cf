"""The systems a run scores: built-in baselines, our models, external estimates.

A system is named on the command line (``--systems mixture,oracle,dsp``) or given as a folder of
estimates made elsewhere (``--estimates [NAME=]DIR``, the ``<song>/<stem>.wav`` layout, optionally
under a split folder). A model whose folder is missing fails with a one-line message before
any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from engine.audio import read_audio, resample
from engine.constants import STEMS
from engine.data.musdb import Track, find_sources
from engine.errors import StemtokError
from engine.evaluation.baselines import DspSeparator, MixtureBaseline, OracleMask, System
from engine.runtime.separator import Separator


class _Shipped:
    """One of our shipped model folders on onnxruntime, aligned mode (loaded on first use)."""

    name = ""
    needs_references = False

    def __init__(self) -> None:
        self._separator: Separator | None = None

    def __call__(
        self, mixture: np.ndarray, rate: int, references: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        if self._separator is None:
            from engine.runtime.factory import open_separator

            self._separator = open_separator(self.name)
        stems = self._separator.separate(mixture, rate, mode="aligned")
        return {name: np.asarray(stems[name]) for name in STEMS}


class DefaultSystem(_Shipped):
    """Our generative default model (``resources/models/default``)."""

    name = "default"


class TeacherSystem(_Shipped):
    """Our discriminative teacher, a band-split RoFormer (``resources/models/teacher``)."""

    name = "teacher"


#: Built-in system name -> (factory, one-letter type shown in the tables, description).
BUILTIN: dict[str, tuple[type, str, str]] = {
    "mixture": (MixtureBaseline, "F", "floor: the mixture as every stem"),
    "oracle": (OracleMask, "O", "oracle ideal ratio masks from the true stems (upper bound)"),
    "dsp": (DspSeparator, "B", "classical DSP: HPSS drums, low-pass bass, centre vocals"),
    "default": (DefaultSystem, "G", "our default model (onnxruntime, aligned decoding)"),
    "teacher": (
        TeacherSystem,
        "D",
        "our discriminative teacher (band-split RoFormer, onnxruntime)",
    ),
}
DEFAULT_SYSTEMS: tuple[str, ...] = ("mixture", "oracle", "dsp")

Kind = Literal["builtin", "estimates"]


@dataclass(frozen=True)
class SystemSpec:
    """One scored system: a built-in separator or a folder of estimates."""

    name: str
    kind: Kind
    type: str  # F floor, O oracle, B baseline, E external, G generative (ours), D teacher (ours)
    description: str
    path: Path | None = None

    def separator(self) -> System:
        """The built-in separator (only for ``kind == "builtin"``)."""
        if self.kind != "builtin":
            raise StemtokError(f"system '{self.name}' is a folder of estimates, not a separator")
        factory: type[System] = BUILTIN[self.name][0]
        return factory()


def builtin(name: str) -> SystemSpec:
    """The spec of a built-in system; a clear error for unknown or not-yet-available names."""
    if name not in BUILTIN:
        known = ", ".join(BUILTIN)
        raise StemtokError(f"unknown system '{name}' (known: {known}; or use --estimates DIR)")
    if name in ("default", "teacher"):  # fail before any work starts when the model is not here
        from engine.runtime.model import model_dir, read_config

        read_config(model_dir(name), verify=False)
    _, kind, description = BUILTIN[name]
    return SystemSpec(name, "builtin", kind, description)


def external(text: str) -> SystemSpec:
    """``NAME=DIR`` or ``DIR`` (named after the folder) as an estimates system."""
    name, sep, folder = text.partition("=")
    path = Path(folder if sep else name)
    if not sep:
        name = path.resolve().name
    if not path.is_dir():
        raise StemtokError(f"--estimates {text}: {path} is not a folder")
    if not name or name in BUILTIN:
        raise StemtokError(f"--estimates {text}: pick another name (NAME=DIR), '{name}' is taken")
    return SystemSpec(name, "estimates", "E", f"estimates from {path}", path)


def resolve(names: list[str], estimates: list[str]) -> list[SystemSpec]:
    """Specs for ``--systems`` and ``--estimates``, checked, in the order given."""
    specs = [builtin(n) for n in names] + [external(e) for e in estimates]
    seen = [s.name for s in specs]
    dupes = sorted({n for n in seen if seen.count(n) > 1})
    if dupes:
        raise StemtokError(f"system named twice: {', '.join(dupes)}")
    if not specs:
        raise StemtokError("no systems to score (use --systems and/or --estimates)")
    return specs


def estimate_files(spec: SystemSpec, track: Track) -> dict[str, Path]:
    """``stem -> file`` of ``spec``'s estimates for ``track``; an error naming what is missing."""
    assert spec.path is not None
    candidates = [spec.path / track.name]
    if track.split:
        candidates.append(spec.path / track.split / track.name)
    for folder in candidates:
        if folder.is_dir():
            found = find_sources(folder)
            missing = [s for s in STEMS if s not in found]
            if missing:
                raise StemtokError(
                    f"estimates '{spec.name}': {folder} has no {', '.join(missing)} "
                    f"(expected {missing[0]}.wav or .flac)"
                )
            return {s: found[s] for s in STEMS}
    raise StemtokError(f"estimates '{spec.name}': no folder for song '{track.name}' in {spec.path}")


def conform(
    audio: np.ndarray,
    rate: int,
    target_rate: int,
    target_shape: tuple[int, int],
    tolerance: int,
    where: str | os.PathLike[str],
) -> tuple[np.ndarray, list[str]]:
    """Bring an external estimate to the reference's rate, channels and length.

    A different rate is resampled, mono is spread to all channels (and several channels are
    averaged for a mono reference), and a length differing by at most ``tolerance`` samples is
    padded or trimmed; each such step is returned as a note. Anything else is an error.
    """
    notes: list[str] = []
    if rate != target_rate:
        audio = resample(audio, rate, target_rate)
        notes.append(f"resampled {rate} -> {target_rate} Hz")
    channels, frames = target_shape
    if audio.shape[0] != channels:
        if audio.shape[0] == 1:
            audio = np.repeat(audio, channels, axis=0)
        elif channels == 1:
            audio = audio.mean(axis=0, keepdims=True)
        else:
            raise StemtokError(
                f"{where}: {audio.shape[0]} channels but the reference has {channels}"
            )
        notes.append(f"channels {audio.shape[0]} -> {channels}")
    diff = audio.shape[1] - frames
    if abs(diff) > tolerance:
        raise StemtokError(
            f"{where}: {audio.shape[1]} samples but the reference has {frames} "
            f"({diff / target_rate:+.3f} s; estimates must cover the same span as the song)"
        )
    if diff:
        audio = audio[:, :frames] if diff > 0 else np.pad(audio, ((0, 0), (0, -diff)))
        notes.append(f"length {'trimmed' if diff > 0 else 'padded'} by {abs(diff)} samples")
    return np.asarray(audio, dtype=np.float32), notes


def load_estimates(
    spec: SystemSpec,
    track: Track,
    rate: int,
    shape: tuple[int, int],
    max_seconds: float | None,
    tolerance_s: float,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read, crop and conform ``spec``'s estimates of ``track`` to ``shape`` ``(C, N)``."""
    out: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for stem, path in estimate_files(spec, track).items():
        audio, file_rate = read_audio(path)
        if max_seconds is not None:
            audio = audio[:, : max(1, round(max_seconds * file_rate))]
        tol = round(tolerance_s * rate)
        out[stem], stem_notes = conform(audio, file_rate, rate, shape, tol, path)
        notes += [f"{stem}: {n}" for n in stem_notes]
    return out, notes

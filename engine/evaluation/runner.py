"""Run built-in separators and measure their speed and memory, one fresh process each.

How speed and memory are measured (and why this is fair between systems):

- Each (song, system) separation runs in its **own fresh Python process**
  (``python -m engine.evaluation.runner``), one at a time, so no two systems compete for the
  cores and each has its own memory high-water mark.
- The child reads the song (mixture, plus the true stems when the system needs them), then times
  only the call that separates: wall-clock seconds (``time.perf_counter``) and CPU seconds
  (``time.process_time``, all threads). **RTF** = separation wall seconds / audio seconds.
- **Peak RSS** is the child's ``ru_maxrss`` at the end (Linux: the largest resident set the
  process ever had, all threads). An **idle** child that imports the same modules and reads the
  same audio but separates nothing is measured the same way; the difference is the memory the
  separation itself needed.
- Estimates go back to the parent as a ``.npy`` file ``[S, C, N]`` (stems in
  :data:`engine.constants.STEMS` order), so they are computed once and then scored.

``isolate=False`` runs the same code in the calling process (tests, debugging); peak RSS is then
not reported, because it would include whatever the caller did before.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import engine
from engine.atomic import save_npy
from engine.constants import STEMS
from engine.data.musdb import Track, list_tracks
from engine.errors import StemtokError
from engine.evaluation.systems import SystemSpec, builtin


@dataclass(frozen=True)
class SeparationRun:
    """Timing and memory of one separation."""

    system: str
    song: str
    audio_seconds: float
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float | None

    @property
    def rtf(self) -> float:
        return self.seconds / self.audio_seconds if self.audio_seconds else float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def separate_track(
    track: Track, spec: SystemSpec, max_seconds: float | None, dest: Path | None
) -> SeparationRun:
    """Separate ``track`` with the built-in ``spec`` in this process; save ``[S, C, N]`` to
    ``dest`` (``None``: read the audio only, for the idle measurement).
    """
    separator = spec.separator()
    audio = track.load(max_seconds=max_seconds)
    refs = audio.stems if separator.needs_references else None
    seconds = cpu = 0.0
    if dest is not None:
        t0, c0 = time.perf_counter(), time.process_time()
        stems = separator(audio.mixture, audio.rate, refs)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        save_npy(dest, np.stack([np.asarray(stems[s], dtype=np.float32) for s in STEMS]))
    return SeparationRun(spec.name, track.name, audio.duration, seconds, cpu, None)


def _song_track(folder: str) -> Track:
    """The track of one song folder (``list_tracks`` of a song folder is that song)."""
    return list_tracks(folder)[0]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(engine.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def separate_isolated(
    track: Track, spec: SystemSpec, max_seconds: float | None, dest: Path | None
) -> SeparationRun:
    """:func:`separate_track` in a fresh child process; adds its peak RSS."""
    args = {
        "folder": str(track.path),
        "system": spec.name,
        "max_seconds": max_seconds,
        "dest": str(dest) if dest else None,
    }
    cmd = [sys.executable, "-m", "engine.evaluation.runner", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise StemtokError(f"separating '{track.name}' with {spec.name} failed: {lines[-1]}")
    return SeparationRun(**json.loads(proc.stdout.strip().splitlines()[-1]))


def _child_main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    try:
        track = _song_track(args["folder"])
        dest = Path(args["dest"]) if args["dest"] else None
        run = separate_track(track, builtin(args["system"]), args["max_seconds"], dest)
    except StemtokError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = asdict(run)
    out["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))

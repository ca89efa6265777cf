"""Benchmark of the data factory: wall-clock real-time factor of making a whole set."""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.data.factory import SynthConfig, synth


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_synth(cfg: SynthConfig, *, jobs: int, keep: Path | None = None) -> dict[str, Any]:
    """Make ``cfg`` from scratch in a temporary folder (or ``keep``) and time it.

    ``speed_x_realtime`` is seconds of audio per wall-clock second for the whole run (planning,
    rendering, FluidSynth/Festival processes, production, VAD, writing 24-bit WAV files);
    ``cpu_x_realtime`` divides by the CPU time of this process and all its children instead.
    """
    with tempfile.TemporaryDirectory(prefix="stemtok-bench-") as tmp:
        out = keep or Path(tmp) / "set"
        load_before = os.getloadavg()[0]
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        manifest = synth(cfg, out, jobs=jobs)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        audio = float(manifest["total_seconds"])
        return {
            "minutes_of_audio": round(audio / 60, 2),
            "songs": len(manifest["songs"]),
            "backend": manifest["config"]["backend"],
            "jobs": jobs,
            "wall_seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1),
            "speed_x_realtime": round(audio / wall, 2),
            "cpu_x_realtime": round(audio / cpu, 2),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
        }

"""Songs per minute of ``stemtok library`` with ``--engine local`` and ``--engine ray`` on the
same songs, the two run in alternation so that the machine's load hits them alike.

    python scripts/library_throughput.py --songs 40 --seconds 1 2 --workers 2 --rounds 2 \\
        --json docs/scale-out/throughput.json

Each run is the whole command in a fresh process (model loads and, for Ray, starting a local
cluster included: ``songs_per_min``), and also the rate once every worker is busy, from the
``finished`` times in the manifest (``steady_songs_per_min``). The songs are made here: a tone
and noise, stereo 44.1 kHz, lengths spread evenly over ``--seconds``. The stems of the two
engines are compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from engine.atomic import write_json

ROOT = Path(__file__).resolve().parents[1]


def make_songs(folder: Path, n: int, low: float, high: float) -> float:
    """``n`` songs under ``folder`` (in 4 sub-folders); returns their total seconds."""
    rng, total = np.random.default_rng(0), 0.0
    for i in range(n):
        seconds = low + (high - low) * i / max(1, n - 1)
        t = np.arange(round(44_100 * seconds)) / 44_100
        x = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t)[:, None]
        x = x + 0.05 * rng.standard_normal((len(t), 2))
        path = folder / f"disc{i % 4}" / f"track{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x.astype(np.float32), 44_100)
        total += seconds
    return total


def one_run(src: Path, out: Path, engine: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "app.cli", "library", str(src), "-o", str(out)]
    cmd += ["--engine", engine, "--workers", str(args.workers), "--model", args.model]
    cmd += ["--device", "cpu", "--quiet"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    records = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    done = sorted(r["finished"] for r in records if r["status"] == "ok")
    steady = (len(done) - 1) / (done[-1] - done[0]) * 60 if len(done) > 1 else None
    return {
        "engine": engine,
        "songs": len(done),
        "wall_s": round(wall, 2),
        "songs_per_min": round(len(done) / wall * 60, 1),
        "steady_songs_per_min": None if steady is None else round(steady, 1),
        "load_1min_before": round(load, 2),
    }


def stems_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.wav"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--songs", type=int, default=40)
    ap.add_argument("--seconds", type=float, nargs=2, default=(1.0, 2.0), metavar=("MIN", "MAX"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="teacher")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    runs, identical = [], True
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "music"
        audio_s = make_songs(src, args.songs, *args.seconds)
        for r in range(args.rounds):
            outs = {}
            for engine in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
                outs[engine] = Path(tmp) / f"{engine}{r}"
                runs.append(one_run(src, outs[engine], engine, args) | {"round": r})
                print(json.dumps(runs[-1]), flush=True)
            identical &= stems_of(outs["local"]) == stems_of(outs["ray"])
    result = {
        "machine": f"{os.cpu_count()} CPUs, {os.uname().machine}",
        "model": args.model,
        "songs": args.songs,
        "audio_s": round(audio_s, 1),
        "workers": args.workers,
        "identical_stems": identical,
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()

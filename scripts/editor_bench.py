"""Redraw timing of the editor's lanes for a long song, offscreen.

Builds a synthetic stereo song (default 10 minutes at 44.1 kHz) with four stems, opens it in the
real editor window (no separation: the stems are fixed shares of the mixture) and times full
repaints of the lanes canvas at several zoom levels while scrolling, plus the peak building and
the audio callback's mixing cost. Prints a table and writes JSON with ``--json``.

    .venv/bin/python scripts/editor_bench.py --minutes 10 --json /tmp/editor_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication

from app.editor.mixer import Mixer, Strip
from app.editor.peaks import Peaks
from app.editor.player import Player
from app.editor.session import Session
from app.editor.window import MainWindow
from engine.constants import STEMS

VIEWS_S = (None, 60.0, 10.0, 1.0, 0.05)  # visible seconds (None: the whole song)


def song(minutes: float, rate: int) -> np.ndarray:
    """A stereo test song ``[2, N]``: tones with a slow envelope plus noise bursts."""
    n = int(minutes * 60 * rate)
    t = np.arange(n, dtype=np.float32) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * t / 7.0, dtype=np.float32)
    x = 0.3 * env * np.sin(2 * np.pi * 110 * t, dtype=np.float32)
    x += 0.05 * np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    return np.stack([x, np.roll(x, 441)])


def timed(fn: Any, repeats: int) -> list[float]:
    """Milliseconds of ``fn(k)`` for ``k`` in ``range(repeats)``."""
    out = []
    for k in range(repeats):
        t = time.perf_counter()
        fn(k)
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_redraws(win: MainWindow, repeats: int) -> list[dict[str, Any]]:
    c, rows = win.editor.canvas, []
    for seconds in VIEWS_S:
        c.fit()
        if seconds is not None:
            c.spp = seconds * c.rate / c.width()
        page = c.width() * c.spp
        starts = np.linspace(0, max(0.0, c.frames - page), repeats)

        def redraw(k: int, starts: np.ndarray = starts) -> None:
            c.scroll_to(float(starts[k]))  # every redraw shows another part of the song
            c.repaint()

        ms = timed(redraw, repeats)
        rows.append(
            {
                "visible_s": round(page / c.rate, 3),
                "spp": round(c.spp, 2),
                "median_ms": statistics.median(ms),
                "max_ms": max(ms),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=44100)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--size", default="1280x760")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    app = QApplication.instance() or QApplication(["editor-bench"])
    mix = song(args.minutes, args.rate)
    bank = np.stack([mix * share for share in (0.4, 0.3, 0.2, 0.1)]).astype(np.float32)
    settings = QSettings(str(Path("/tmp") / "editor-bench.ini"), QSettings.Format.IniFormat)
    session = Session(lambda: None, settings)  # type: ignore[arg-type,return-value]
    session.mixture, session.bank, session.rate = mix, bank, args.rate
    t0 = time.perf_counter()
    peaks = [Peaks(mix)] + [Peaks(bank[i]) for i in range(4)]
    peaks_s = time.perf_counter() - t0
    win = MainWindow(session)
    w, h = (int(v) for v in args.size.split("x"))
    win.resize(w, h)
    win.show()
    conf = np.linspace(0.2, 1, int(args.minutes * 60 * 12.5), dtype=np.float32)
    session.peaks, session.confidence_rate = peaks, 12.5
    session.confidence = {n: conf for n in STEMS}
    session._ready()  # what a finished separation does: lanes from the prepared peaks
    app.processEvents()
    session.set_strip("drums", mute=True)
    waves = bench_redraws(win, args.repeats)
    t0 = time.perf_counter()
    win.spectro.setChecked(True)  # spectrograms are made on the worker pool
    during: list[float] = []
    while win.spectro_task is not None:  # the GUI keeps drawing meanwhile
        during += timed(lambda k: win.editor.canvas.repaint(), 1)
        app.processEvents()
    spectro_first_s = time.perf_counter() - t0
    spectro = bench_redraws(win, args.repeats)
    mixer = Mixer(bank, args.rate, block=1024)
    mixer.set_strips([Strip(gain_db=-3), Strip(mute=True), Strip(pan=0.5), Strip()])
    player = Player(mixer, block=1024)
    player.playing = True
    buf = np.zeros((2, 1024), np.float32)
    block_ms = timed(lambda k: player.fill(buf), 400)
    result = {
        "song": f"{args.minutes} min, {args.rate} Hz, stereo, 5 lanes",
        "canvas_px": [win.editor.canvas.width(), win.editor.canvas.height()],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_1min": os.getloadavg()[0],
        "peaks_build_s": round(peaks_s, 3),
        "waveform_redraws": waves,
        "spectrogram_build_s": round(spectro_first_s, 3),
        "redraw_while_building_max_ms": max(during, default=0.0),
        "spectrogram_redraws": spectro,
        "mix_block_1024_ms": {
            "median": statistics.median(block_ms),
            "max": max(block_ms),
            "budget": 1024 / args.rate * 1000,
        },
    }
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    win.close()


def _print(r: dict[str, Any]) -> None:
    print(
        f"{r['song']}; canvas {r['canvas_px'][0]}x{r['canvas_px'][1]} px; {r['machine']}; "
        f"load {r['load_1min']:.2f}"
    )
    print(f"peaks built in {r['peaks_build_s']:.2f} s (all 5 lanes)")
    for name in ("waveform_redraws", "spectrogram_redraws"):
        print(name.replace("_", " ") + ":")
        for row in r[name]:
            print(
                f"  visible {row['visible_s']:>8.2f} s  ({row['spp']:>9.2f} samples/px): "
                f"median {row['median_ms']:6.2f} ms, max {row['max_ms']:6.2f} ms"
            )
    print(
        f"5 spectrograms built in the background in {r['spectrogram_build_s']:.2f} s; "
        f"redraws meanwhile: max {r['redraw_while_building_max_ms']:.1f} ms"
    )
    m = r["mix_block_1024_ms"]
    print(
        f"mix one 1024-frame block: median {m['median']:.3f} ms, max {m['max']:.3f} ms "
        f"(budget {m['budget']:.1f} ms)"
    )


if __name__ == "__main__":
    main()

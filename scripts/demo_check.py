"""Does a model hear the singer in the bundled demo? (docs/teacher-report.md, docs/lm-report.md)

    .venv/bin/python scripts/demo_check.py --model teacher --json docs/teacher-report/demo.json

The demo's sung regions are known (``resources/demo/demo.json``, ``vocal_activity``: found in
the true vocal stem when the demo was made). Two numbers, both in dB:

- ``vocal_contrast``: the level of the separated vocal stem where the demo sings minus its level
  where it does not (levels are RMS over all those samples, both channels): how clearly the
  stem holds the voice and only the voice;
- ``karaoke_vocal_below_stem``: the separated vocal stem's level in the sung regions minus the
  level there of what ``stemtok karaoke``'s instrumental holds beyond the true instrumental
  (the demo is rendered again from its seed for its true stems, ``scripts/make_demo.py``):
  the voice a singer would hear behind them, plus whatever instrument sound went missing.

Beside them, SI-SDR per stem of the separation against the true stems of the whole demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import read_audio
from engine.constants import STEMS
from engine.dsp import si_sdr
from engine.karaoke import karaoke_mix
from engine.runtime.factory import open_separator

sys.path.insert(0, str(Path(__file__).parent))
from make_demo import render_demo

DEMO = Path("resources/demo/demo.flac")


def level_db(x: np.ndarray, mask: np.ndarray) -> float:
    """RMS level (dBFS) of ``x`` ``[C, N]`` over the samples where ``mask`` ``[N]`` holds."""
    part = x[:, mask].astype(np.float64)
    return float(10 * np.log10(np.mean(part**2) + 1e-20)) if part.size else float("nan")


def sung_mask(n: int, rate: int, segments: list[list[float]]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for start, end in segments:
        mask[round(start * rate) : round(end * rate)] = True
    return mask


def check(model: str | None, demo: Path = DEMO, threads: int | None = None) -> dict[str, Any]:
    meta = json.loads(demo.with_suffix(".json").read_text())
    samples, rate = read_audio(demo)
    sep = open_separator(model, device="cpu", threads=threads)
    stems = sep.separate(samples, rate)
    vocals = stems["vocals"]
    sung = sung_mask(vocals.shape[-1], rate, meta["vocal_activity"]["segments"])
    _, truth = render_demo(int(meta["seed"]))
    n = samples.shape[-1]
    if truth.mixture.shape[-1] < n or np.abs(truth.mixture[:, :n] - samples).max() > 1e-4:
        raise SystemExit(f"{demo}: rendering seed {meta['seed']} again does not give this demo")
    true_instrumental = sum(truth.stems[s][:, :n] for s in ("drums", "bass", "other"))
    left = karaoke_mix(stems, rate=rate) - true_instrumental
    sung_db, unsung_db = level_db(vocals, sung), level_db(vocals, ~sung)
    return {
        "model": model or "default",
        "vocal_stem_sung_dbfs": round(sung_db, 2),
        "vocal_stem_unsung_dbfs": round(unsung_db, 2),
        "vocal_contrast_db": round(sung_db - unsung_db, 2),
        "karaoke_vocal_sung_dbfs": round(level_db(left, sung), 2),
        "karaoke_vocal_below_stem_db": round(sung_db - level_db(left, sung), 2),
        "mixture_sung_dbfs": round(level_db(samples, sung), 2),
        "si_sdr": {
            s: round(si_sdr(truth.stems[s][:, :n].reshape(1, -1), stems[s].reshape(1, -1)), 2)
            for s in STEMS
        },
        "sung_seconds": round(float(sung.sum()) / rate, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help="model name or folder (default: the default model)")
    ap.add_argument("--demo", type=Path, default=DEMO)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    result = check(args.model, args.demo, args.threads)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

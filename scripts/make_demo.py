"""Make the bundled demo song (resources/demo/demo.flac) with our own data factory.

The demo is a procedural song rendered with the full backend (FluidSynth, a Hydrogen kit or GM
drums, our singer or Festival), so it is ours to ship (CC0). Run from the repository root:

    .venv/bin/python scripts/make_demo.py --seed 11
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.audio import write_audio
from engine.constants import MODEL_RATE
from engine.data import pipeline
from engine.data.song import SongSpec


def render_demo(seed: int) -> tuple[SongSpec, pipeline.RenderedSong]:
    """The demo song of ``seed`` and its render, with its true stems (the same samples every
    time: generator version 1)."""
    spec = pipeline.procedural_song(seed, 20.0, 26.0, version="1")
    return spec, pipeline.render_song(spec, rate=MODEL_RATE, seed=seed, backend="full", version="1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=Path("resources/demo"))
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    spec, song = render_demo(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_audio(
        args.out / "demo.flac", song.mixture, MODEL_RATE, bit_depth=16, overwrite=args.overwrite
    )
    meta = {
        "title": "stemtok demo",
        "made_by": "scripts/make_demo.py (stemtok data factory, full backend)",
        "seed": args.seed,
        "licence": "CC0-1.0",
        "tempo": spec.tempo,
        "key": spec.key,
        "style": spec.style,
        "render": {k: v for k, v in song.render_info.items() if k != "production"},
        "vocal_activity": song.vad,
    }
    (args.out / "demo.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta["render"]), spec.style, spec.key, spec.tempo, song.vad["ratio"])


if __name__ == "__main__":
    main()

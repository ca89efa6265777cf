"""``stemtok karaoke FILE -o OUT``: the instrumental, optionally with a quiet guide vocal and in
another key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from app.commands.separate import add_input_args, fit_range, load_separator
from engine.errors import StemtokError

EXAMPLES = """\
Examples:
  stemtok karaoke song.flac -o song-karaoke.wav
  stemtok karaoke song.flac -o song-karaoke.flac --guide-vocal -18 --semitones -2
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "karaoke",
        help="make an instrumental (optionally with a guide vocal)",
        description="Separate FILE and write drums + bass + other to OUT (format from its "
        "suffix: .wav .flac .mp3), at the input's rate and channels.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, metavar="FILE", help="the song")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT", help="output file")
    p.add_argument(
        "--guide-vocal",
        type=float,
        metavar="DB",
        help="keep the vocal this many dB down (e.g. -18) as a guide",
    )
    p.add_argument(
        "--semitones", type=float, default=0.0, help="shift the key (pedalboard PitchShift)"
    )
    add_input_args(p)
    p.set_defaults(func=run)


def karaoke_mix(
    stems: Any, guide_db: float | None = None, semitones: float = 0.0, rate: int = 48000
) -> np.ndarray:
    """drums + bass + other ``[C, N]``, plus vocals at ``guide_db`` dB, key-shifted."""
    mix: np.ndarray = stems["drums"] + stems["bass"] + stems["other"]
    if guide_db is not None:
        mix = mix + stems["vocals"] * np.float32(10 ** (guide_db / 20))
    if semitones:
        from pedalboard import Pedalboard, PitchShift

        shifted = Pedalboard([PitchShift(semitones=semitones)])(mix.astype(np.float32), rate)
        mix = np.asarray(shifted, np.float32)[:, : mix.shape[1]]
    return mix.astype(np.float32)


def run(args: argparse.Namespace) -> int:
    from engine.audio import write_audio

    if not args.input.is_file():
        raise StemtokError(f"{args.input}: no such file")
    if args.out.exists() and not args.overwrite:
        raise StemtokError(f"{args.out}: already exists (pass --overwrite to replace it)")
    if args.guide_vocal is not None and args.guide_vocal > 0:
        raise StemtokError("--guide-vocal is a level below the original: give 0 or less dB")
    if not -12 <= args.semitones <= 12:
        raise StemtokError("--semitones must lie in [-12, 12]")
    from app.commands.separate import Bar

    sep = load_separator(args)
    bar = Bar(args.quiet)
    try:
        stems = sep.separate(args.input, mode=args.mode, seed=args.seed,
                             progress=bar.start(args.input.name))  # fmt: skip
    finally:
        bar.close()
    mix = karaoke_mix(stems, args.guide_vocal, args.semitones, stems.rate)
    fmt = args.out.suffix.lower().lstrip(".")
    depth = "32f" if fmt == "wav" else "24"
    mix = fit_range(mix, depth, fmt, args.out)
    write_audio(args.out, mix, stems.rate, bit_depth=None if fmt == "mp3" else depth,
                overwrite=args.overwrite)  # fmt: skip
    print(args.out)
    return 0

"""``stemtok karaoke FILE -o OUT``: the instrumental, optionally with a quiet guide vocal and in
another key."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from app.commands.separate import Bar, add_input_args, load_separator
from engine.errors import StemtokError
from engine.karaoke import karaoke_mix
from engine.stem_writer import write_arrays

log = logging.getLogger("stemtok.karaoke")

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
        "suffix: .wav .flac .aiff .mp3), at the input's rate and channels (MP3: stereo at up "
        "to 48 kHz, with a notice when that changes them).",
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


def run(args: argparse.Namespace) -> int:
    from engine.audio import probe
    from engine.outputs import format_of, plan_output

    if args.guide_vocal is not None and args.guide_vocal > 0:
        raise StemtokError("--guide-vocal is a level below the original: give 0 or less dB")
    if not -12 <= args.semitones <= 12:
        raise StemtokError("--semitones must lie in [-12, 12]")
    info = probe(args.input)  # a missing or unreadable song fails before the model loads
    plan = plan_output(format_of(args.out), info.channels, info.rate)
    if args.out.exists() and not args.overwrite:
        raise StemtokError(f"{args.out}: already exists (pass --overwrite to replace it)")
    if plan.notice:
        log.warning("%s: %s", args.out.name, plan.notice)
    sep = load_separator(args)
    bar = Bar(args.quiet)
    try:
        stems = sep.separate(
            args.input, mode=args.mode, seed=args.seed, progress=bar.start(args.input.name)
        )
    finally:
        bar.close()
    mix = karaoke_mix(stems, args.guide_vocal, args.semitones, stems.rate)
    for line in write_arrays({"karaoke": args.out}, plan, [mix], args.overwrite):
        log.warning("%s", line)
    print(args.out)
    return 0

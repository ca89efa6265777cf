"""``stemtok send REGION --out DIR``: separate a region through the running bridge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.constants import STEMS
from engine.errors import StemtokError

INSTRUMENTAL = "instrumental"

EXAMPLES = """\
Examples:
  stemtok send region.wav --out stems              stems/region/{vocals,drums,bass,other}.wav
  stemtok send region.wav --out stems --stems vocals --mode generative --seed 2
  stemtok send region.flac --out stems --port 47321    over TCP instead of the Unix socket
  stemtok send region.wav --out stems --karaoke        stems/region/instrumental.wav
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "send",
        help="separate a region through the running bridge",
        description="Send an audio file to the running 'stemtok bridge' and write the stems it "
        "returns as 32-bit float WAV files (same rate, length and channels as the region).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "region", type=Path, metavar="REGION", help="audio file (any format stemtok reads)"
    )
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--stems", default=",".join(STEMS), help="comma-separated subset of stems")
    p.add_argument(
        "--mode",
        choices=("aligned", "generative"),
        default="aligned",
        help="aligned (default): stems sum to the region; generative: from tokens",
    )
    p.add_argument("--seed", type=int, help="sample with this seed instead of greedy decoding")
    p.add_argument(
        "--karaoke",
        action="store_true",
        help="write instrumental.wav (drums + bass + other) instead of the stems",
    )
    p.add_argument("--port", type=int, help="TCP port of the bridge (default: find it)")
    p.add_argument("--socket", type=Path, metavar="PATH", help="Unix socket of the bridge")
    p.add_argument("--overwrite", action="store_true", help="replace existing stem files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.commands.separate import parse_stems
    from engine.audio import read_audio

    stems = ["drums", "bass", "other"] if args.karaoke else parse_stems(args.stems)
    names = [INSTRUMENTAL] if args.karaoke else stems
    paths = {s: args.out / args.region.stem / f"{s}.wav" for s in names}
    for path in paths.values():
        if path.exists() and not args.overwrite:
            raise StemtokError(f"{path}: already exists (pass --overwrite to replace it)")
    audio, rate = read_audio(args.region)
    result = _separate(args, audio, rate, stems)
    if args.karaoke:
        from engine.karaoke import karaoke_mix

        result = {INSTRUMENTAL: karaoke_mix(result)}
    _write(result, paths, rate, args.overwrite)
    print(args.out / args.region.stem)
    return 0


def _separate(args: argparse.Namespace, audio: Any, rate: int, stems: list[str]) -> Any:
    from app.bridge.auth import TokenError
    from app.bridge.client import BridgeClient, BridgeError

    bar = _Bar(args.quiet, args.region.name)
    try:
        with BridgeClient(args.socket, args.port) as client:
            return client.separate(
                audio,
                rate,
                stems=stems,
                mode=args.mode,
                seed=args.seed,
                progress=bar.update,
                client="stemtok send",
            )
    except (BridgeError, TokenError) as exc:
        raise StemtokError(f"bridge: {exc}") from None
    finally:
        bar.close()


def _write(result: dict[str, Any], paths: dict[str, Path], rate: int, overwrite: bool) -> None:
    """The stems as 32-bit float WAV files (which hold any channel count and rate)."""
    from engine.outputs import plan_output
    from engine.stem_writer import write_arrays

    arrays = [result[name] for name in paths]
    plan = plan_output("wav", arrays[0].shape[0], rate, "32f")
    write_arrays(paths, plan, arrays, overwrite)


class _Bar:
    """A tqdm bar fed by progress frames (done, total sample frames)."""

    def __init__(self, quiet: bool, name: str) -> None:
        self.bar: Any = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=100,
                desc=name[:30],
                unit="%",
                file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}",
            )

    def update(self, done: int, total: int) -> None:
        if self.bar is not None and total > 0:
            self.bar.update(round(100 * done / total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

"""``stemtok separate FILE_OR_DIR... -o OUTDIR``: four stems per song, the model loaded once."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.constants import STEMS
from engine.errors import StemtokError
from engine.outputs import FORMATS, OutputPlan

if TYPE_CHECKING:
    from engine.runtime.separator import StreamingSeparator

EXAMPLES = """\
Examples:
  stemtok separate song.flac -o stems                  stems/song/{vocals,drums,bass,other}.wav
  stemtok separate album/ -o stems --format flac       every song in the folder
  stemtok separate song.wav -o stems --format mp3      MP3 (stereo at up to 48 kHz)
  stemtok separate song.mp3 -o stems --stems vocals --mode generative --seed 3
"""

log = logging.getLogger("stemtok.separate")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "separate",
        help="split songs into vocals, drums, bass and other",
        description="Split songs into stems with the default model (or --model teacher|DIR). "
        "'aligned' "
        "mode (default) keeps the input's rate, length and channels sample for sample, and the "
        "stems add up to the input; 'generative' mode writes what the codec decodes from the "
        "tokens alone (mono, copied to every channel), as in the paper.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_args(p)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio files or folders")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR", help="output folder")
    add_output_args(p)
    p.set_defaults(func=run)


def add_output_args(p: argparse.ArgumentParser) -> None:
    """The stem files' options, shared by ``separate`` and ``library`` (see
    :func:`output_options`)."""
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="wav",
        help="output format (wav); mp3 holds 1-2 channels at up to 48 kHz: more channels are "
        "downmixed to stereo and higher rates resampled, with a notice",
    )
    p.add_argument(
        "--bit-depth",
        choices=("16", "24", "32f"),
        default=None,
        help="wav default 32f (exact: stems add up to the input), flac and aiff default 24; "
        "integer depths and mp3 clip samples beyond full scale (with a warning)",
    )
    p.add_argument("--stems", default=",".join(STEMS), help="comma-separated subset of stems")


def output_options(args: argparse.Namespace) -> tuple[list[str], str]:
    """The stems and bit depth asked for by :func:`add_output_args`' options, checked."""
    from engine.outputs import output_depth

    stems = parse_stems(args.stems)
    if args.format == "mp3" and args.bit_depth:
        raise StemtokError("--bit-depth applies to wav, flac and aiff, not mp3")
    return stems, output_depth(args.format, args.bit_depth)


def add_input_args(p: argparse.ArgumentParser, threads: str = "all cores") -> None:
    """Options shared by ``separate``, ``karaoke`` and ``library`` (``threads``: what
    ``--threads`` defaults to, in words)."""
    p.add_argument(
        "--mode",
        choices=("aligned", "generative"),
        default="aligned",
        help="aligned (default): masks on the input, sample-aligned, stems sum to the input; "
        "generative: decoded from the tokens alone",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto (default) uses CUDA when it works here, else the CPU",
    )
    p.add_argument("--seed", type=int, help="sample (top-k 50) with this seed instead of greedy")
    p.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help="default (the shipped generative model), teacher (the shipped discriminative "
        "teacher: fast, aligned only) or a model folder made by 'stemtok export'",
    )
    p.add_argument("--threads", type=int, help=f"CPU threads (default: {threads})")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def find_audio(inputs: Sequence[str]) -> list[Path]:
    """Files named, and the audio files found (recursively) in folders named."""
    from engine.audio import audio_files

    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = audio_files(path)
            if not files:
                raise StemtokError(f"{path}: no audio files in this folder")
            found.extend(files)
        elif path.exists():
            found.append(path)
        else:
            raise StemtokError(f"{path}: no such file or folder")
    return found


class Bar:
    """A tqdm bar per song on stderr, fed by the separator's ``progress(fraction)``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def start(self, name: str) -> Callable[[float], None]:
        if self.quiet:
            return lambda fraction: None
        from tqdm import tqdm

        self.bar = tqdm(
            total=100,
            desc=name[:30],
            unit="%",
            file=sys.stderr,
            leave=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
        )

        def update(fraction: float) -> None:
            self.bar.update(round(100 * fraction) - self.bar.n)

        return update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def parse_stems(text: str) -> list[str]:
    stems = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in stems if s not in STEMS]
    if bad or not stems:
        raise StemtokError(f"--stems: unknown {', '.join(bad) or '(empty)'}; use {','.join(STEMS)}")
    return stems


def outputs_for(song: Path, out: Path, stems: Sequence[str], fmt: str) -> dict[str, Path]:
    """The stem files of ``song``, in :data:`STEMS` order (the order the separator yields)."""
    return {s: out / song.stem / f"{s}.{fmt}" for s in STEMS if s in stems}


def iter_jobs(
    files: Sequence[Path], out: Path, stems: Sequence[str], fmt: str, overwrite: bool
) -> Iterator[tuple[Path, dict[str, Path]]]:
    """Songs with their output paths; refuses up front when a file exists (no --overwrite)."""
    jobs = [(f, outputs_for(f, out, stems, fmt)) for f in files]
    names = [f.stem for f in files]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise StemtokError(f"two inputs are both called '{dup}': their stems would collide")
    for _, paths in jobs:
        for path in paths.values():
            if path.exists() and not overwrite:
                raise StemtokError(f"{path}: already exists (pass --overwrite to replace it)")
    yield from jobs


def load_separator(args: argparse.Namespace) -> StreamingSeparator:
    from engine.runtime.factory import open_separator

    return open_separator(args.model, device=args.device, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    stems, depth = output_options(args)
    out = args.out.resolve()  # never take earlier results in OUTDIR for songs
    files = [f for f in find_audio(args.inputs) if out not in f.resolve().parents]
    if not files:
        raise StemtokError("no songs to separate (the only audio found is inside OUTDIR)")
    jobs = list(iter_jobs(files, args.out, stems, args.format, args.overwrite))
    ready = check_songs(jobs, args.format, depth)  # before the model loads
    if not ready:
        return 1
    sep = load_separator(args)
    failed = len(jobs) - len(ready)
    for song, paths, plan in ready:
        try:
            separate_one(sep, song, paths, plan, args)
        except StemtokError as exc:  # one line per bad song; the others still run
            if len(jobs) == 1:
                raise
            print(f"stemtok: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(args.out / song.stem)
    return 1 if failed else 0


def check_songs(
    jobs: Sequence[tuple[Path, dict[str, Path]]], fmt: str, depth: str
) -> list[tuple[Path, dict[str, Path], OutputPlan]]:
    """Each song's header read and its output planned, before any model loads: a bad song is
    one line on stderr (the error itself when it is the only song); a changed output (an MP3
    downmix or resampling) is one notice line."""
    from engine.audio import probe
    from engine.outputs import plan_output

    ready = []
    for song, paths in jobs:
        try:
            info = probe(song)
            plan = plan_output(fmt, info.channels, info.rate, depth)
        except StemtokError as exc:
            if len(jobs) == 1:
                raise
            print(f"stemtok: error: {exc}", file=sys.stderr)
            continue
        if plan.notice:
            log.warning("%s: %s", song.name, plan.notice)
        ready.append((song, paths, plan))
    return ready


def separate_one(
    sep: StreamingSeparator,
    song: Path,
    paths: dict[str, Path],
    plan: OutputPlan,
    args: argparse.Namespace,
) -> None:
    """Stream ``song`` through the separator into its stem files, with a progress bar."""
    from engine.runtime.sources import FileSource
    from engine.stem_writer import separate_to_files

    source = FileSource(song)  # a bad file fails here, before a progress bar is drawn
    bar = Bar(args.quiet)
    try:
        lines = separate_to_files(
            sep,
            source,
            paths,
            plan,
            mode=args.mode,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=bar.start(song.name),
        )
    finally:
        bar.close()
    for line in lines:
        log.warning("%s", line)

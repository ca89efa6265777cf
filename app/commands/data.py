"""``stemtok data``: make multitrack training sets and inspect stem folders."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.commands import tokenize_cmd
from engine.errors import StemtokError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "data",
        help="make multitrack training sets and inspect stem folders",
        description="Make songs with true stems (vocals, drums, bass, other) and inspect sets.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    _register_synth(dsub)
    _register_stats(dsub)
    _register_bench(dsub)
    tokenize_cmd.register(dsub)
    _register_pseudo_label(dsub)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _register_synth(dsub: argparse._SubParsersAction[Any]) -> None:
    s = dsub.add_parser(
        "synth",
        help="render a synthetic multitrack set",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write procedural songs (and songs cut from the MIDI files of Debian "
        "packages) with exact stems in the MUSDB18-HQ layout: OUT/<split>/<song>/"
        "{mixture,vocals,drums,bass,other}.wav, 48 kHz stereo 24-bit, mixture = sum of stems, "
        "plus OUT/manifest.json.\n\nThe same --seed gives the same bytes; running the same "
        "command again resumes an interrupted set.",
    )
    s.add_argument("--minutes", type=float, required=True, help="total length of the set")
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="set seed (default 0)")
    s.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores)",
    )
    s.add_argument(
        "--backend",
        choices=("auto", "full", "numpy"),
        default="auto",
        help="full: FluidSynth, drum kits, Festival; numpy: no system packages; "
        "auto: full when available",
    )
    s.add_argument(
        "--generator",
        choices=("1", "2"),
        default="2",
        help="generator version: 1 the original songs (fixed benchmark sets), 2 produced and "
        "mastered like records (default 2)",
    )
    s.add_argument("--min-seconds", type=float, default=30.0, help="shortest song (default 30)")
    s.add_argument("--max-seconds", type=float, default=75.0, help="longest song (default 75)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_synth)


def _register_stats(dsub: argparse._SubParsersAction[Any]) -> None:
    s = dsub.add_parser(
        "stats",
        help="summarise what a set holds",
        description="Summarise a set made by 'data synth' (from its manifest) "
        "or any MUSDB-layout folder (from its files).",
    )
    s.add_argument("dir", type=Path, metavar="DIR")
    s.add_argument("--markdown", action="store_true", help="print Markdown tables")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument(
        "--no-audio",
        dest="audio",
        action="store_false",
        help="skip the audio measurements (loudness, crest factor, vocal range, centroids)",
    )
    s.add_argument("--max-songs", type=int, help="measure the audio of this many songs at most")
    s.set_defaults(func=run_stats)


def _register_bench(dsub: argparse._SubParsersAction[Any]) -> None:
    s = dsub.add_parser(
        "bench",
        help="measure how fast a set renders (x real time)",
        description="Render a fresh set in a temporary folder and report seconds of audio per "
        "wall-clock second, CPU time and the machine's load. Numbers for the record come from "
        "here, not from timed tests.",
    )
    s.add_argument("--minutes", type=float, default=10.0, help="set length (default 10)")
    s.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    s.add_argument("--backend", choices=("auto", "full", "numpy"), default="auto")
    s.add_argument("--seed", type=int, default=1000)
    s.add_argument("--generator", choices=("1", "2"), default="2", help="generator version")
    s.add_argument("--json", type=Path, help="also write the result to this JSON file")
    s.set_defaults(func=run_bench)


def _register_pseudo_label(dsub: argparse._SubParsersAction[Any]) -> None:
    s = dsub.add_parser(
        "pseudo-label",
        help="label unlabeled songs with the teacher (for LM training)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Separate every audio file under --in with the teacher, find where the "
        "estimated vocals sing (Silero VAD, with the energy detector's union by default; "
        "segments within 0.5 s merged, those of 2 s or more kept) and write each kept segment "
        "as a song folder: OUT/<split>/<song>__<k>/{mixture,vocals,drums,bass,other}.wav "
        "(float32; the mixture is the source audio), plus OUT/manifest.json marking the stems "
        "as pseudo-labels. 'stemtok data tokenize' and LM training read OUT like any stem "
        "set.\n\nExample:\n  stemtok data pseudo-label --in ~/music --out data/pseudo",
    )
    s.add_argument(
        "--in",
        dest="src",
        type=Path,
        required=True,
        metavar="FOLDER",
        help="folder of songs (searched recursively)",
    )
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.add_argument(
        "--model",
        default="teacher",
        metavar="NAME_OR_DIR",
        help="separating model (default: the shipped teacher)",
    )
    s.add_argument("--split", default="train", help="split folder to write (default train)")
    s.add_argument(
        "--vad",
        choices=("auto", "silero", "energy", "silero+energy", "none"),
        default="auto",
        help="vocal activity detector (default auto); none: keep every file whole, for "
        "instrumental music",
    )
    s.add_argument(
        "--min-seconds", type=float, default=2.0, help="shortest vocal segment kept (default 2)"
    )
    s.add_argument(
        "--merge-gap",
        type=float,
        default=0.5,
        help="segments this close are merged first (default 0.5 s)",
    )
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    s.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier run in OUT")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_pseudo_label)


def run_pseudo_label(args: argparse.Namespace) -> int:
    from engine.data.pseudo_label import PseudoLabelConfig, pseudo_label

    cfg = PseudoLabelConfig(
        split=args.split,
        vad_method=args.vad,
        merge_gap_s=args.merge_gap,
        min_segment_s=args.min_seconds,
        overwrite=args.overwrite,
    )
    failed: list[str] = []

    def on_error(path: Path, message: str) -> None:
        failed.append(str(path))
        print(f"stemtok: error: {message}", file=sys.stderr)

    bar = _Bar(disable=args.quiet, desc="labelling")
    try:
        manifest = pseudo_label(
            args.src,
            args.out,
            cfg=cfg,
            model=args.model,
            device=args.device,
            threads=args.threads,
            progress=bar.update,
            on_error=on_error,
        )
    finally:
        bar.close()
    kept = sum(1 for s in manifest["sources"] if s.get("songs"))
    print(
        f"{args.out}: {len(manifest['songs'])} segments, "
        f"{manifest['total_seconds'] / 60:.1f} min, from {kept} of "
        f"{len(manifest['sources'])} files"
    )
    return 1 if failed else 0


def run_bench(args: argparse.Namespace) -> int:
    from engine.data.bench import bench_synth
    from engine.data.factory import SynthConfig

    result = bench_synth(
        SynthConfig(
            minutes=args.minutes, seed=args.seed, backend=args.backend, version=args.generator
        ),
        jobs=args.jobs,
    )
    for k, v in result.items():
        print(f"{k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from engine.data.factory import SynthConfig, synth

    if args.jobs < 1:
        raise StemtokError("--jobs must be at least 1")
    if not 0 < args.min_seconds <= args.max_seconds:
        raise StemtokError("--min-seconds must be positive and not above --max-seconds")
    cfg = SynthConfig(
        minutes=args.minutes,
        seed=args.seed,
        backend=args.backend,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        version=args.generator,
    )
    bar = _Bar(disable=args.quiet)
    try:
        manifest = synth(cfg, args.out, jobs=args.jobs, progress=bar.update)
    finally:
        bar.close()
    splits = ", ".join(f"{k} {v}" for k, v in manifest["splits"].items())
    print(
        f"{args.out}: {len(manifest['songs'])} songs, "
        f"{manifest['total_seconds'] / 60:.1f} min ({splits})"
    )
    return 0


class _Bar:
    """A tqdm bar in seconds of audio, made lazily on the first update."""

    def __init__(self, disable: bool, desc: str = "rendering") -> None:
        self.disable = disable or not sys.stderr.isatty()
        self.bar: Any = None
        self.desc = desc

    def update(self, done: float, total: float) -> None:
        if self.disable:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=round(total),
                unit="s",
                desc=self.desc,
                file=sys.stderr,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
            )
        self.bar.update(round(done) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_stats(args: argparse.Namespace) -> int:
    from engine.data import stats

    summary = stats.summarise(args.dir)
    if args.audio:
        summary["audio"] = stats.distributions(stats.audio_stats(args.dir, args.max_songs))
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    audio = summary.pop("audio", None)
    print(stats.format_markdown(summary) if args.markdown else stats.format_text(summary))
    if audio:
        print()
        print(stats.format_distributions(audio, markdown=args.markdown))
    return 0

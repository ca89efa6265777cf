"""``stemtok eval DATA``: score separators on a folder of songs with true stems."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.errors import StemtokError

DESCRIPTION = """\
Score separators the way the field does, on any folder in the MUSDB18-HQ layout
(<root>[/<split>]/<song>/{mixture,vocals,drums,bass,other}.wav or .flac, any rate, mono or
stereo). Every system is scored on the same material in one run: ViSQOL per stem and DNSMOS
on vocals (the paper's Tables 1-2), SDR (BSS-Eval v4) and SI-SDR, multi-resolution STFT and
log-mel distances, plus speed (real-time factor) and peak memory per system. NISQA (MOS and
its four dimensions; in Table 2 on vocals, apart on every stem) runs when asked for with
--metrics ...,nisqa: its weights (NISQA v2.0's nisqa.tar, CC BY-NC-SA, not shipped) come from
--nisqa-weights, else $STEMTOK_NISQA_WEIGHTS, else ../shared/weights/nisqa/nisqa.tar beside the
checkout.

Systems: mixture (every stem = the mixture; the floor), oracle (ideal ratio masks from the
true stems; an upper bound), dsp (classical signal processing). default is our shipped
generative model (onnxruntime, aligned mode); teacher is our discriminative band-split
RoFormer (resources/models/teacher). Estimates made elsewhere: --estimates NAME=DIR, with
DIR/<song>/<stem>.wav.

Writes OUT/results.json (every number), OUT/report.md and OUT/report.html (tables, figures,
audio excerpts).

Examples:
  stemtok eval data/musdb18hq --split test --out eval/ --max-seconds 30
  stemtok eval data/synth --systems mixture,dsp --estimates demucs=sep/htdemucs --out eval/
  stemtok eval data/synth --split test --metrics dnsmos,nisqa --nisqa-weights nisqa.tar --out eval/
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "eval",
        help="score separators on a folder of songs with true stems",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="folder of songs (MUSDB18-HQ layout)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="report folder")
    p.add_argument(
        "--systems",
        default="mixture,oracle,dsp",
        metavar="LIST",
        help="comma-separated: mixture, oracle, dsp (default: these three), default, teacher; "
        "'none' for estimates only",
    )
    p.add_argument(
        "--estimates",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="score estimates from DIR/<song>/<stem>.wav (repeatable)",
    )
    p.add_argument("--split", help="only this split folder (e.g. test)")
    p.add_argument("--songs", default="", metavar="LIST", help="only these songs (comma-separated)")
    p.add_argument(
        "--through-codec",
        action="store_true",
        help="pass references and outputs through our codec first (paper protocol)",
    )
    p.add_argument(
        "--codec",
        type=Path,
        metavar="DIR",
        help="codec folder for --through-codec (default resources/models/codec-small)",
    )
    p.add_argument("--max-seconds", type=float, metavar="S", help="score only the first S s")
    p.add_argument(
        "--metrics",
        default="visqol,dnsmos,sdr,si_sdr,mrstft,logmel",
        metavar="LIST",
        help="comma-separated subset of the default list, plus nisqa (needs its weights)",
    )
    p.add_argument(
        "--nisqa-weights",
        type=Path,
        metavar="FILE",
        help="NISQA v2.0's nisqa.tar for the nisqa metric (default: $STEMTOK_NISQA_WEIGHTS, "
        "else ../shared/weights/nisqa/nisqa.tar beside the checkout)",
    )
    p.add_argument("--jobs", "-j", type=int, default=2, help="songs scored in parallel (2)")
    p.add_argument(
        "--silence-db",
        type=float,
        default=-60.0,
        help="reference stems below this RMS (dBFS) are reported, not scored (-60)",
    )
    p.add_argument(
        "--excerpt-song", help="song for spectrograms and audio (default: first with vocals)"
    )
    p.add_argument("--excerpt-seconds", type=float, default=3.0, help="excerpt length (3; 0: none)")
    p.add_argument(
        "--audio-format",
        choices=("mp3", "wav", "none"),
        default="mp3",
        help="format of the audio excerpts (mp3)",
    )
    p.add_argument("--cache-dir", metavar="DIR", help="reference-side cache (default: OUT/.cache)")
    p.add_argument(
        "--no-isolate",
        action="store_true",
        help="separate in this process (faster start; no peak-memory numbers)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _list(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    return () if items == ("none",) else items


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise StemtokError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(p.name != ".cache" for p in out.iterdir()) and not overwrite:
        raise StemtokError(f"--out {out}: folder is not empty (pass --overwrite to write into it)")


def _config(args: argparse.Namespace) -> Any:
    from engine.evaluation.harness import EvalConfig

    if args.jobs < 1:
        raise StemtokError(f"--jobs must be at least 1, got {args.jobs}")
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise StemtokError(f"--max-seconds must be positive, got {args.max_seconds:g}")
    out = Path(args.out)
    return EvalConfig(
        data=Path(args.data),
        systems=_list(args.systems),
        estimates=tuple(args.estimates),
        split=args.split,
        songs=_list(args.songs),
        through_codec=args.through_codec,
        codec=args.codec,
        max_seconds=args.max_seconds,
        metrics=_list(args.metrics),
        nisqa_weights=args.nisqa_weights,
        jobs=args.jobs,
        isolate=not args.no_isolate,
        silence_db=args.silence_db,
        cache_dir=Path(args.cache_dir) if args.cache_dir else out / ".cache",
        excerpt_song=args.excerpt_song,
        excerpt_seconds=max(0.0, args.excerpt_seconds),
    )


class _Bars:
    """One tqdm bar per stage on stderr, only on a terminal and without --quiet."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bars = enabled, {}  # type: ignore[var-annotated]

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="step", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run(args: argparse.Namespace) -> int:
    from engine.evaluation.harness import run_eval
    from engine.evaluation.report import write_report

    cfg = _config(args)
    out = Path(args.out)
    _check_out(out, args.overwrite)
    bars = _Bars(enabled=not args.quiet and sys.stderr.isatty())
    try:
        result = run_eval(cfg, bars)
    finally:
        bars.close()
    files = write_report(result, out, args.audio_format)
    print(f"report: {files['html']}")
    print(f"        {files['markdown']}")
    print(f"numbers: {files['json']}")
    return 0

"""``stemtok info FILE...``: what each file holds, read from the file itself."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from engine import audio
from engine.errors import StemtokError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "info",
        help="show format, rate, channels, duration and levels of audio files",
        description="Show format, sample format, rate, channels, duration, peak and RMS level "
        "(dBFS) of each file. Files that cannot be read are reported one line each; the exit "
        "code is 1 when any failed.",
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, MP3, OGG, AIFF)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.add_argument("--no-levels", action="store_true", help="skip peak/RMS (no full read)")
    p.set_defaults(func=run)


def describe(path: str, levels: bool = True) -> dict[str, Any]:
    """Facts about one file as a JSON-ready dict."""
    info = audio.probe(path)
    out: dict[str, Any] = {
        "path": str(info.path),
        "format": info.format,
        "sample_format": info.sample_format,
        "rate": info.rate,
        "channels": info.channels,
        "frames": info.frames,
        "duration": round(info.duration, 6),
    }
    if levels:
        st = audio.stats(path)
        out["peak_dbfs"] = round(st.peak_dbfs, 2) if math.isfinite(st.peak_dbfs) else None
        out["rms_dbfs"] = round(st.rms_dbfs, 2) if math.isfinite(st.rms_dbfs) else None
    return out


def _fmt_db(x: float | None) -> str:
    return "-inf dBFS" if x is None else f"{x:.2f} dBFS"


def _fmt_duration(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:06.3f}" if h else f"{m}:{s:06.3f}"


def _print_text(d: dict[str, Any]) -> None:
    line = (
        f"{d['path']}: {d['format'].upper()} {d['sample_format']}, {d['rate']} Hz, "
        f"{d['channels']} ch, {_fmt_duration(d['duration'])} ({d['frames']} frames)"
    )
    if "peak_dbfs" in d:
        line += f", peak {_fmt_db(d['peak_dbfs'])}, RMS {_fmt_db(d['rms_dbfs'])}"
    print(line)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            d = describe(path, levels=not args.no_levels)
        except StemtokError as exc:
            failed += 1
            print(f"stemtok: error: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(d))
        else:
            _print_text(d)
    return 1 if failed else 0

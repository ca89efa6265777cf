"""Build a folder of real mixtures from the free game soundtracks that Debian packages ship
(engine/data/recordings.py), for ``stemtok data pseudo-label --vad none`` and self-training.

    sudo apt-get install --no-install-recommends warzone2100-music xmoto-data \
        frozen-bubble-data neverball-common
    .venv/bin/python scripts/real_recordings.py --out data/real --excerpt-seconds 60

Each track of 30 s or more becomes ``OUT/<package>/<track>.flac`` (its centred excerpt of at
most ``--excerpt-seconds``; 0 keeps whole tracks); ``OUT/manifest.json`` lists package, licence,
source file and excerpt of every file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.data.recordings import MIN_SECONDS, PACKAGE_DIRS, build_set, package_dirs
from engine.errors import StemtokError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--excerpt-seconds", type=float, default=60.0)
    ap.add_argument("--min-seconds", type=float, default=MIN_SECONDS)
    ap.add_argument(
        "--packages",
        help=f"comma-separated, of {', '.join(PACKAGE_DIRS)} (default: all that are installed)",
    )
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        manifest = build_set(
            args.out,
            dirs=package_dirs(args.packages.split(",") if args.packages else None),
            excerpt_s=args.excerpt_seconds or None,
            min_seconds=args.min_seconds,
            overwrite=args.overwrite,
            echo=print,
        )
    except StemtokError as exc:
        print(f"real_recordings: error: {exc}", file=sys.stderr)
        return 1
    minutes = manifest["total_seconds"] / 60
    print(f"{args.out}: {len(manifest['files'])} files, {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

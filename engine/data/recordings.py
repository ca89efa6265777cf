"""Real recordings without stems: the freely licensed music that Debian packages ship.

A set of real mixtures for self-training (pseudo-label them with the teacher, then train on the
teacher's estimates remixed across songs)::

    /usr/share/games/<game>/.../*.{ogg,opus}   (only the folders in PACKAGE_DIRS)
      -> tracks of MIN_SECONDS or more (jingles and sound effects left out)
      -> a centred excerpt of at most ``excerpt_s`` seconds of each (a bounded cost per track)
      -> OUT/<package>/<track>.flac (24-bit, the source's rate and channels)
      -> OUT/manifest.json: per file its package, licence, source file and excerpt

:data:`LICENCES` holds each package's music licence as its ``/usr/share/doc/<pkg>/copyright``
states it (all GPL-2 or GPL-2+; Warzone 2100's albums also CC-BY-SA-3.0). All of it is
instrumental game music: we know of no sung vocals in it (not every track was listened to), so
its vocal pseudo-labels are whatever the teacher puts there. Files are read through libsndfile
(``soundfile``), which also decodes the Ogg Opus files that pedalboard cannot open.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from engine import atomic
from engine.audio import write_audio
from engine.errors import StemtokError, install_hint

#: Debian packages with real produced music, where they install it, and its licence.
PACKAGE_DIRS: Final[dict[str, tuple[Path, ...]]] = {
    "warzone2100-music": (Path("/usr/share/games/warzone2100/music"),),
    "xmoto-data": (Path("/usr/share/games/xmoto/Textures/Musics"),),
    "frozen-bubble-data": (Path("/usr/share/games/frozen-bubble/snd"),),
    "neverball-common": (Path("/usr/share/games/neverball/bgm"),),
}
LICENCES: Final[dict[str, str]] = {
    "warzone2100-music": "GPL-2+ (albums: CC-BY-SA-3.0 or later, or GPL-2+)",
    "xmoto-data": "GPL-2+",
    "frozen-bubble-data": "GPL-2",
    "neverball-common": "GPL-2+",
}
SUFFIXES: Final = (".ogg", ".oga", ".opus", ".flac", ".wav")
MIN_SECONDS: Final = 30.0  # shorter files are jingles and sound effects
MANIFEST: Final = "manifest.json"
KIND: Final = "recordings"


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError:
        raise StemtokError(
            f"reading the recordings needs soundfile ({install_hint('train')})"
        ) from None
    return soundfile


def package_dirs(names: Sequence[str] | None = None) -> dict[str, tuple[Path, ...]]:
    """The folders of the packages ``names`` (all of :data:`PACKAGE_DIRS` when ``None``)."""
    if names is None:
        return dict(PACKAGE_DIRS)
    unknown = [n for n in names if n not in PACKAGE_DIRS]
    if unknown:
        raise StemtokError(f"unknown package {unknown[0]!r} (one of {', '.join(PACKAGE_DIRS)})")
    return {n: PACKAGE_DIRS[n] for n in names}


def find_recordings(
    dirs: Mapping[str, Sequence[Path]] = PACKAGE_DIRS, min_seconds: float = MIN_SECONDS
) -> list[tuple[str, Path, float]]:
    """``(package, file, seconds)`` of every audio file of ``min_seconds`` or more under the
    folders of each package (sorted; packages that are not installed are skipped)."""
    sf = _soundfile()
    found = []
    for package, folders in dirs.items():
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() not in SUFFIXES or not path.is_file():
                    continue
                seconds = float(sf.info(str(path)).duration)
                if seconds >= min_seconds:
                    found.append((package, path, seconds))
    return found


def excerpt(audio: np.ndarray, rate: int, seconds: float | None) -> tuple[np.ndarray, int]:
    """The centred ``seconds`` of ``audio`` ``[C, N]`` (all of it when shorter or ``None``) and
    its first sample."""
    n = audio.shape[1]
    if seconds is None or n <= round(seconds * rate):
        return audio, 0
    keep = round(seconds * rate)
    start = (n - keep) // 2
    return audio[:, start : start + keep], start


def build_set(
    out: str | os.PathLike[str],
    *,
    dirs: Mapping[str, Sequence[Path]] = PACKAGE_DIRS,
    licences: Mapping[str, str] = LICENCES,
    excerpt_s: float | None = 60.0,
    min_seconds: float = MIN_SECONDS,
    overwrite: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the recordings of ``dirs`` (excerpts of at most ``excerpt_s`` seconds) as FLAC
    files ``OUT/<package>/<name>.flac`` plus ``OUT/manifest.json``; returns the manifest."""
    sf = _soundfile()
    out_dir = Path(out)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise StemtokError(f"{out_dir}: folder is not empty (pass --overwrite to replace files)")
    tracks = find_recordings(dirs, min_seconds)
    if not tracks:
        raise StemtokError("no recordings found: install " + " ".join(dirs))
    files = []
    for package, path, seconds in tracks:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        part, start = excerpt(np.ascontiguousarray(audio.T), int(rate), excerpt_s)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(path.relative_to(dirs[package][0]).parts))
        dest = out_dir / package / f"{Path(name).stem}.flac"
        peak = float(np.abs(part).max(initial=0.0))
        write_audio(dest, part / max(peak, 1.0), int(rate), bit_depth=24, overwrite=overwrite)
        files.append(
            {
                "file": str(dest.relative_to(out_dir)),
                "package": package,
                "licence": licences.get(package, "see /usr/share/doc/<package>/copyright"),
                "source": str(path),
                "source_seconds": round(seconds, 3),
                "start_seconds": round(start / rate, 3),
                "seconds": round(part.shape[1] / rate, 3),
                "scaled_to_peak_1": peak > 1.0,
            }
        )
        if echo is not None:
            echo(f"{dest.relative_to(out_dir)}: {part.shape[1] / rate:.0f} s of {seconds:.0f} s")
    manifest = {
        "kind": KIND,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "excerpt_seconds": excerpt_s,
        "min_seconds": min_seconds,
        "total_seconds": round(sum(f["seconds"] for f in files), 3),
        "files": files,
    }
    atomic.write_json(out_dir / MANIFEST, manifest)
    return manifest

"""Pseudo-labels: stems of unlabeled songs estimated by the teacher, kept where someone sings.

As in the paper, the language model can train on music that has no true stems::

    FOLDER/**/*.{wav,flac,mp3,...}
      -> teacher (engine.runtime, onnxruntime): four stems [C, N] at the song's rate, which add
         up to the song
      -> vocal activity of the estimated vocals (engine.data.vad: Silero, with the energy
         detector's union by default): segments within 0.5 s merged, those >= 2 s kept;
         ``vad_method="none"`` keeps every file whole (instrumental music, self-training)
      -> one song folder per kept segment, the MUSDB layout that engine.data.musdb reads:
         OUT/<split>/<song>__<k>/{mixture,vocals,drums,bass,other}.wav (float32; the mixture is
         the original audio cut to the segment)
      -> OUT/manifest.json: "kind": "pseudo-labels", the teacher's folder and checksums, the
         VAD settings, and per song folder its source file, segment and that every stem is a
         pseudo-label; per source file what was found or why nothing was kept

Nothing is overwritten without ``overwrite=True``; the manifest is rewritten after every source
file, so an interrupted run says what it finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from engine import atomic
from engine.audio import READ_SUFFIXES, probe, read_audio
from engine.constants import STEMS
from engine.data import vad
from engine.data.musdb import write_track
from engine.errors import StemtokError
from engine.progress import SecondsProgress
from engine.runtime.model import sha256

MANIFEST: Final[str] = "manifest.json"
KIND: Final[str] = "pseudo-labels"
FORMAT: Final[int] = 1
#: ``(vocals [C, N], rate) -> (segments in seconds, detector name)``
Segmenter = Callable[[np.ndarray, int], tuple[vad.Segments, str]]


@dataclass(frozen=True)
class PseudoLabelConfig:
    """What is kept and where it goes."""

    split: str = "train"
    vad_method: vad.Method | Literal["none"] = "auto"  # "none": every file kept whole
    merge_gap_s: float = 0.5  # vocal segments this close are one
    min_segment_s: float = 2.0  # the paper's rule: shorter segments are dropped
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.split):
            raise StemtokError(f"split name {self.split!r}: use letters, digits, _ or -")
        if self.min_segment_s <= 0 or self.merge_gap_s < 0:
            raise StemtokError("the minimum segment must be positive and the merge gap >= 0")

    @property
    def vad_config(self) -> vad.VadConfig:
        return vad.VadConfig(merge_gap_s=self.merge_gap_s, min_segment_s=self.min_segment_s)


def whole_file(vocals: np.ndarray, rate: int) -> tuple[vad.Segments, str]:
    """The segmenter of ``vad_method="none"``: the whole file is one segment."""
    return [(0.0, vocals.shape[-1] / rate)], "none"


def vad_segmenter(cfg: PseudoLabelConfig) -> Segmenter:
    """The default segmenter: :func:`engine.data.vad.detect` with ``cfg``'s method and rules
    (:func:`whole_file` for ``"none"``)."""
    if cfg.vad_method == "none":
        return whole_file
    method = vad.resolve_method(cfg.vad_method)  # fails early when silero is asked but absent

    def segment(vocals: np.ndarray, rate: int) -> tuple[vad.Segments, str]:
        found = vad.detect(vocals, rate, method=method, cfg=cfg.vad_config)  # type: ignore[arg-type]
        return list(found.segments), found.method

    return segment


# --------------------------------------------------------------------------- inputs
def find_songs(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files under ``folder`` (recursively, sorted), none inside ``exclude``."""
    if not folder.is_dir():
        raise StemtokError(f"{folder}: no such folder of songs")
    skip = exclude.resolve() if exclude is not None else None
    files = sorted(
        f
        for f in folder.rglob("*")
        if f.is_file()
        and f.suffix.lower() in READ_SUFFIXES
        and not f.name.startswith(".")
        and (skip is None or skip not in f.resolve().parents)
    )
    if not files:
        raise StemtokError(f"{folder}: no audio files ({', '.join(READ_SUFFIXES)})")
    return files


def song_names(files: Sequence[Path]) -> list[str]:
    """A unique folder-safe name per file (its stem; ``-2``, ``-3`` ... for repeats)."""
    names: list[str] = []
    for f in files:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", f.stem).strip("._") or "song"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


# --------------------------------------------------------------------------- output
def prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` unless ``overwrite``; then remove what an earlier run's
    manifest lists (its song folders and the manifest), nothing else."""
    if out.exists() and not out.is_dir():
        raise StemtokError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise StemtokError(
                f"{out}: folder is not empty (pass --overwrite to replace "
                "the pseudo-labels an earlier run wrote there)"
            )
        old = out / MANIFEST
        if old.is_file():
            for song in _read_manifest(old).get("songs", []):
                shutil.rmtree(out / song["split"] / song["name"], ignore_errors=True)
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StemtokError(f"{path}: cannot read the manifest ({exc})") from None
    if data.get("kind") != KIND:
        raise StemtokError(f"{path}: not a pseudo-label manifest; refusing to delete anything")
    return data


def _write_json(path: Path, obj: Any) -> None:
    atomic.write_json(path, obj)


def cut(audio: np.ndarray, rate: int, segment: tuple[float, float]) -> np.ndarray:
    """Samples of ``audio`` ``[C, N]`` inside ``segment`` (seconds)."""
    a = max(0, round(segment[0] * rate))
    b = min(int(audio.shape[1]), round(segment[1] * rate))
    return audio[:, a:b]


# --------------------------------------------------------------------------- one song
def label_song(
    separator: Any,
    path: Path,
    name: str,
    out: Path,
    cfg: PseudoLabelConfig,
    segmenter: Segmenter,
    progress: Callable[[float], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Separate one file, find its vocal segments and write one song folder per segment.

    Returns (the source file's entry, the entries of the song folders written).
    """
    audio, rate = read_audio(path)
    stems = separator.separate(audio, rate, progress=progress)
    found, method = segmenter(np.asarray(stems["vocals"]), rate)
    segments = vad.finalize(found, cfg.vad_config)  # the rules hold for any segmenter
    duration = audio.shape[1] / rate
    source = {
        "file": str(path),
        "sha256": sha256(path),
        "duration": round(duration, 3),
        "rate": rate,
        "channels": int(audio.shape[0]),
        "vad_method": method,
        "vocal_ratio": round(vad.vad_ratio(segments, duration), 4),
        "segments": [[round(a, 3), round(b, 3)] for a, b in segments],
        "songs": [],
    }
    songs = []
    for k, seg in enumerate(segments, start=1):
        song = f"{name}__{k:02d}"
        parts = {s: cut(np.asarray(stems[s]), rate, seg) for s in STEMS}
        write_track(
            out / cfg.split / song,
            parts,
            rate,
            mixture=cut(audio, rate, seg),
            bit_depth="32f",
            overwrite=cfg.overwrite,
        )
        songs.append(
            {
                "name": song,
                "split": cfg.split,
                "source": str(path),
                "segment": [round(seg[0], 3), round(seg[1], 3)],
                "duration": round(parts["vocals"].shape[1] / rate, 3),
                "rate": rate,
                "pseudo_label": True,
                "stems": {"mixture": "source audio", **{s: "pseudo-label" for s in STEMS}},
            }
        )
        source["songs"].append(song)
    if not segments:
        source["status"] = f"no vocal segment of {cfg.min_segment_s:g} s or more"
    else:
        source["status"] = "ok"
    return source, songs


# --------------------------------------------------------------------------- the set
def model_facts(separator: Any) -> dict[str, Any]:
    """The separating model's folder, kind, name and the sha256 of its files."""
    model = separator.model
    config: dict[str, Any] = model.config
    return {
        "folder": str(model.folder),
        "kind": config.get("kind", "lm"),
        "name": config.get("name"),
        "files": dict(config.get("files", {})),
        "config_sha256": sha256(Path(model.folder) / "model_config.json"),
    }


def pseudo_label(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cfg: PseudoLabelConfig = PseudoLabelConfig(),
    model: str | os.PathLike[str] | None = None,
    separator: Any = None,
    segmenter: Segmenter | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: SecondsProgress | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> dict[str, Any]:
    """Pseudo-label every audio file under ``src`` into ``out``; returns the manifest.

    ``separator`` (anything with ``separate(audio, rate, progress=...) -> Stems`` and a
    ``model`` with ``folder`` and ``config``) defaults to ``open_separator(model or
    "teacher")``; ``segmenter`` defaults to :func:`vad_segmenter`. A file that cannot be read is
    reported to ``on_error`` and recorded; the others still run.
    """
    src_dir, out_dir = Path(src), Path(out)
    files = find_songs(src_dir, exclude=out_dir)
    segmenter = segmenter or vad_segmenter(cfg)
    if separator is None:
        from engine.runtime.factory import open_separator

        separator = open_separator(model or "teacher", device=device, threads=threads)
    prepare_output(out_dir, cfg.overwrite)
    lengths = [_seconds(f) for f in files]
    total = float(sum(lengths))
    manifest: dict[str, Any] = {
        "kind": KIND,
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input": str(src_dir),
        "stems": list(STEMS),
        "teacher": model_facts(separator),
        "settings": asdict(cfg),
        "audio": "float32 WAV; mixture = the source audio, which the "
        "four pseudo-label stems add up to",
        "total_seconds": 0.0,
        "songs": [],
        "sources": [],
    }
    done = 0.0
    for path, name, length in zip(files, song_names(files), lengths, strict=True):

        def tick(fraction: float, base: float = done, length: float = length) -> None:
            if progress is not None:
                progress(base + fraction * length, total)

        try:
            source, songs = label_song(separator, path, name, out_dir, cfg, segmenter, tick)
        except StemtokError as exc:
            if on_error is not None:
                on_error(path, str(exc))
            source, songs = {"file": str(path), "status": f"error: {exc}", "songs": []}, []
        manifest["sources"].append(source)
        manifest["songs"] += songs
        manifest["total_seconds"] = round(sum(s["duration"] for s in manifest["songs"]), 3)
        _write_json(out_dir / MANIFEST, manifest)
        done += length
        if progress is not None:
            progress(done, total)
    return manifest


def _seconds(path: Path) -> float:
    try:
        return probe(path).duration
    except StemtokError:
        return 0.0  # reported when the file is read

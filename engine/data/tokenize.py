"""Tokenize a stem set once, so the language model trains on stored codes.

``tokenize_set(SET, CODEC, OUT, variants=V)`` writes, per song of every split and variant::

    OUT/<split>/<song>.npz        variant 0 (no augmentation)
    OUT/<split>/<song>.v<j>.npz   variant j >= 1 (augmented)

each with ``codes`` int16 ``[4, 2, K, T]`` (stems vocals, drums, bass, other; path 0 acoustic,
1 semantic) and ``mel`` float16 ``[120, 4 T]``, the log-mel (:func:`engine.dsp.log_mel`)
of the mono mixture of the same variant. Songs are zero-padded to whole codec frames (3840
samples). ``OUT/tokens.json`` records the codec config, the set, every file and the
augmentation of every variant (see docs/dev/TOKENS.md).

Augmentation of a variant (the paper's): per stem a gain in [0.5, 1.5], a polarity flip with
probability 0.1 and a 7-band parametric EQ with stem-dependent gain ranges; the mixture is the
sum of the augmented stems. Running the same command again skips finished files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine import dsp
from engine.atomic import atomic_path
from engine.constants import MODEL_RATE, STEMS
from engine.data.musdb import Track, list_tracks
from engine.errors import StemtokError

FORMAT = 1
TOKENS_FILE = "tokens.json"
#: Centre frequencies (Hz) of the 7 EQ bands and the gain range (+/- dB) of each stem.
EQ_BANDS: tuple[float, ...] = (60.0, 150.0, 400.0, 1000.0, 2500.0, 6000.0, 12000.0)
EQ_RANGE_DB: dict[str, float] = {"vocals": 4.0, "drums": 6.0, "bass": 4.0, "other": 6.0}
EQ_Q = 1.0


def draw_augmentation(rng: np.random.Generator) -> dict[str, Any]:
    """One variant's augmentation: ``{stem: {"gain", "polarity", "eq_db": [7]}}``."""
    aug: dict[str, Any] = {}
    for stem in STEMS:
        r = EQ_RANGE_DB[stem]
        aug[stem] = {
            "gain": round(float(rng.uniform(0.5, 1.5)), 4),
            "polarity": -1 if rng.random() < 0.1 else 1,
            "eq_db": [round(float(g), 2) for g in rng.uniform(-r, r, len(EQ_BANDS))],
        }
    return aug


def apply_augmentation(
    stems: np.ndarray, aug: dict[str, Any], rate: int = MODEL_RATE
) -> np.ndarray:
    """Augment mono stems ``[4, N]`` (order of STEMS) -> ``[4, N]`` float32."""
    import pedalboard as pb

    out = np.empty_like(stems, dtype=np.float32)
    for i, stem in enumerate(STEMS):
        a = aug[stem]
        board = pb.Pedalboard(  # type: ignore[attr-defined]
            [pb.PeakFilter(f, g, EQ_Q) for f, g in zip(EQ_BANDS, a["eq_db"], strict=True)]
        )
        y = board(stems[i : i + 1].astype(np.float32), rate)[0]
        out[i] = y * a["gain"] * a["polarity"]
    return out


def song_file(out: Path, split: str, song: str, variant: int) -> Path:
    suffix = ".npz" if variant == 0 else f".v{variant}.npz"
    return out / split / f"{song}{suffix}"


def encode_song(codec: Any, stems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes int16 ``[4, 2, K, T]`` and mixture log-mel float16 ``[120, 4 T]`` of ``[4, N]``."""
    import torch

    hop = codec.cfg.frame_hop
    stems = np.pad(stems, ((0, 0), (0, (-stems.shape[1]) % hop)))
    device = next(codec.parameters()).device
    with torch.no_grad():
        codes = codec.encode(torch.from_numpy(np.ascontiguousarray(stems)).to(device))
    mel = dsp.log_mel(stems.sum(axis=0))
    return codes.cpu().numpy().astype(np.int16), mel.astype(np.float16)


def _save_npz(path: Path, codes: np.ndarray, mel: np.ndarray) -> None:
    with atomic_path(path) as tmp:  # keeps the .npz suffix, so numpy appends none
        np.savez(tmp, codes=codes, mel=mel)


def _variant_aug(seed: int, split: str, song: str, variant: int) -> dict[str, Any] | None:
    if variant == 0:
        return None
    key = [seed, variant, *song.encode(), *split.encode()]
    return draw_augmentation(np.random.default_rng(key))


def _tracks(set_dir: Path, splits: list[str] | None) -> list[Track]:
    tracks = list_tracks(set_dir)
    if splits:
        tracks = [t for t in tracks if (t.split or "all") in splits]
    if not tracks:
        raise StemtokError(f"{set_dir}: no songs in the splits {splits}")
    return tracks


def tokenize_set(
    set_dir: str | os.PathLike[str],
    codec_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    variants: int = 1,
    seed: int = 0,
    splits: list[str] | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Tokenize every song (and ``variants - 1`` augmented copies); returns ``tokens.json``."""
    from dataclasses import asdict

    from engine.models.codec import load_codec
    from engine.training.codec_data import mono_stems
    from engine.training.common import write_json

    if variants < 1:
        raise StemtokError("--variants must be at least 1")
    set_dir, out = Path(set_dir), Path(out)
    codec = load_codec(codec_path, device)
    tracks = _tracks(set_dir, splits)
    entries: list[dict[str, Any]] = []
    total, done = len(tracks) * variants, 0
    for track in tracks:
        split = track.split or "all"
        stems: np.ndarray | None = None
        for v in range(variants):
            path = song_file(out, split, track.name, v)
            aug = _variant_aug(seed, split, track.name, v)
            if not path.is_file():
                stems = mono_stems(track) if stems is None else stems
                audio = stems if aug is None else apply_augmentation(stems, aug)
                _save_npz(path, *encode_song(codec, audio))
            frames = int(np.load(path)["codes"].shape[-1])
            entries.append(
                {
                    "split": split,
                    "song": track.name,
                    "variant": v,
                    "frames": frames,
                    "file": str(path.relative_to(out)),
                    "augmentation": aug,
                }
            )
            done += 1
            if progress is not None:
                progress(done, total)
    manifest = {
        "format": FORMAT,
        "codec_config": asdict(codec.cfg),
        "codec": str(Path(codec_path).resolve()),
        "set": str(set_dir.resolve()),
        "stems": list(STEMS),
        "frame_rate": codec.cfg.frame_rate,
        "variants": variants,
        "seed": seed,
        "augmentation": "variant 0: none; j >= 1: per-stem gain [0.5, 1.5], polarity flip 10 %, "
        f"7-band peak EQ at {list(EQ_BANDS)} Hz (Q {EQ_Q}) with +/- dB ranges {EQ_RANGE_DB}",
        "songs": entries,
    }
    write_json(out / TOKENS_FILE, manifest)
    return manifest

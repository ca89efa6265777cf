"""Karaoke mixes: the instrumental of separated stems, optionally with a quiet guide vocal and in
another key (``stemtok karaoke`` and the editor's karaoke target)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.constants import MODEL_RATE


def karaoke_mix(
    stems: Mapping[str, np.ndarray],
    guide_db: float | None = None,
    semitones: float = 0.0,
    rate: int = MODEL_RATE,
) -> np.ndarray:
    """drums + bass + other ``[C, N]``, plus vocals at ``guide_db`` dB (None: none), shifted by
    ``semitones`` (pedalboard's PitchShift; the length is kept)."""
    mix: np.ndarray = stems["drums"] + stems["bass"] + stems["other"]
    if guide_db is not None:
        mix = mix + stems["vocals"] * np.float32(10 ** (guide_db / 20))
    if semitones:
        from pedalboard import Pedalboard, PitchShift

        shifted = Pedalboard([PitchShift(semitones=semitones)])(mix.astype(np.float32), rate)
        mix = np.asarray(shifted, np.float32)[:, : mix.shape[1]]
    return mix.astype(np.float32)

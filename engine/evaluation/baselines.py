"""Non-learned separators the harness scores beside the models.

- :class:`MixtureBaseline` — every stem is the mixture (the floor every separator must beat).
- :class:`OracleMask` — ideal ratio masks computed from the true stems (power ratios, i.e. an
  oracle Wiener filter) on a 93-ms STFT; an upper bound for mask-based separation.
- :class:`DspSeparator` — classical signal processing, no training: harmonic/percussive
  separation by median filtering (Fitzgerald 2010) gives the drums; the harmonic part below a
  150-300 Hz crossover gives the bass; centre extraction (the inter-channel similarity of
  Avendano & Jot 2004, in phase, raised to a power) of the harmonic part in the 150 Hz-8 kHz band
  gives the vocals; the remainder is "other". Mono input has no panning cue, so its centre
  weight is 1 and vocals get the whole harmonic mid band.

Oracle and DSP masks apply to the mixture's complex STFT per channel, and "other" is taken as
the mixture minus the other three stems, so the four stems add up to the mixture exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine import dsp
from engine.constants import STEMS
from engine.errors import StemtokError

Stems = dict[str, np.ndarray]


class System(Protocol):
    """A scored system: anything that turns a mixture ``[C, N]`` at ``rate`` into four stems ``[C, N]``."""

    @property
    def name(self) -> str: ...

    @property
    def needs_references(self) -> bool: ...

    def __call__(
        self, mixture: np.ndarray, rate: int, references: Mapping[str, np.ndarray] | None = None
    ) -> Stems: ...


def stft_size(rate: int) -> tuple[int, int]:
    """``(n_fft, hop)``: a power-of-two window of about 93 ms (4096 at 44.1/48 kHz), hop 1/4."""
    n_fft = 2 ** round(math.log2(rate * 0.085))
    return n_fft, n_fft // 4


def _stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The evaluation's STFT (zero padding, ``N // hop + 1`` frames; see :mod:`engine.dsp`)."""
    return dsp.stft(x, n_fft, hop, pad_mode="constant", last_frame=True)


def _remainder(mixture: np.ndarray, stems: Stems, last: str = "other") -> Stems:
    """Fill ``last`` with what the other stems leave of the mixture."""
    rest = np.asarray(mixture, dtype=np.float64) - sum(
        (np.asarray(a, dtype=np.float64) for a in stems.values()), np.zeros(mixture.shape)
    )
    return {**stems, last: rest.astype(np.float32)}


@dataclass(frozen=True)
class MixtureBaseline:
    """Every stem is a copy of the mixture."""

    name: str = "mixture"
    needs_references: bool = False

    def __call__(
        self, mixture: np.ndarray, rate: int, references: Mapping[str, np.ndarray] | None = None
    ) -> Stems:
        return {s: np.array(mixture, dtype=np.float32) for s in STEMS}


@dataclass(frozen=True)
class OracleMask:
    """Ideal ratio masks ``|S_j|^p / sum_k |S_k|^p`` from the true stems (``p = 2``)."""

    name: str = "oracle"
    needs_references: bool = True
    power: float = 2.0

    def __call__(
        self, mixture: np.ndarray, rate: int, references: Mapping[str, np.ndarray] | None = None
    ) -> Stems:
        if references is None or any(s not in references for s in STEMS):
            raise StemtokError("the oracle baseline needs the true stems of every song")
        n_fft, hop = stft_size(rate)
        out: Stems = {s: np.zeros(mixture.shape, np.float32) for s in STEMS}
        for c in range(mixture.shape[0]):  # one channel at a time bounds memory
            mix = _stft(mixture[c], n_fft, hop)  # (F, T)
            total = np.zeros(mix.shape, np.float32)
            for s in STEMS:
                total += np.abs(_stft(references[s][c], n_fft, hop)) ** self.power
            for s in STEMS[:-1]:
                power = np.abs(_stft(references[s][c], n_fft, hop)) ** self.power
                mask = power / np.maximum(total, 1e-20)
                out[s][c] = dsp.istft(mask * mix, mixture.shape[1], n_fft, hop)
        return _remainder(mixture, {s: out[s] for s in STEMS[:-1]})


def _crossover(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """1 below ``lo``, 0 above ``hi``, a raised-cosine fall between; ``[F]``."""
    x = np.clip((freqs - lo) / (hi - lo), 0.0, 1.0)
    return np.asarray(0.5 + 0.5 * np.cos(np.pi * x))


def _centre_weight(spec: np.ndarray, sharpness: float) -> np.ndarray:
    """``[F, T]`` in [0, 1]: 1 where the first two channels are equal in level and phase."""
    if spec.shape[0] < 2:
        return np.ones(spec.shape[1:], np.float32)
    left, right = spec[0], spec[1]
    num = 2.0 * np.real(left * np.conj(right))
    den = np.abs(left) ** 2 + np.abs(right) ** 2 + 1e-12
    return np.asarray(np.clip(num / den, 0.0, 1.0) ** sharpness, dtype=np.float32)


@dataclass(frozen=True)
class DspSeparator:
    """HPSS drums, low-passed harmonic bass, centre-extracted vocals, remainder other."""

    name: str = "dsp"
    needs_references: bool = False
    kernel_s: float = 0.2  # median filter length along time (harmonic part)
    kernel_hz: float = 400.0  # median filter length along frequency (percussive part)
    bass_hz: tuple[float, float] = (150.0, 300.0)
    vocal_band_hz: tuple[float, float] = (150.0, 8000.0)
    centre_sharpness: float = 4.0

    def masks(self, spec: np.ndarray, rate: int, n_fft: int, hop: int) -> dict[str, np.ndarray]:
        """``stem -> [F, T]`` masks for vocals, drums and bass from the ``[C, F, T]`` mixture."""
        from scipy.ndimage import median_filter  # deferred: scipy only for this baseline

        mag = np.abs(spec).mean(axis=0)
        k_t = max(3, round(self.kernel_s * rate / hop) | 1)
        k_f = max(3, round(self.kernel_hz * n_fft / rate) | 1)
        harm = median_filter(mag, size=(1, k_t), mode="nearest")
        perc = median_filter(mag, size=(k_f, 1), mode="nearest")
        drums = perc**2 / (harm**2 + perc**2 + 1e-20)
        freqs = np.linspace(0.0, rate / 2.0, spec.shape[1])[:, None]
        low = _crossover(freqs, *self.bass_hz)
        lo, hi = self.vocal_band_hz
        band = (1.0 - _crossover(freqs, lo * 0.7, lo)) * _crossover(freqs, hi, hi * 1.3)
        vocals = (1.0 - drums) * band * (1.0 - low) * _centre_weight(spec, self.centre_sharpness)
        return {"vocals": vocals, "drums": drums, "bass": (1.0 - drums) * low}

    def __call__(
        self, mixture: np.ndarray, rate: int, references: Mapping[str, np.ndarray] | None = None
    ) -> Stems:
        n_fft, hop = stft_size(rate)
        spec = _stft(mixture, n_fft, hop)  # (C, F, T)
        masks = self.masks(spec, rate, n_fft, hop)
        n = mixture.shape[1]
        stems = {s: dsp.istft(m[None] * spec, n, n_fft, hop) for s, m in masks.items()}
        return _remainder(mixture, stems)

"""A small spectrogram for a lane: log magnitude in dB mapped to colours, at most ~4000 columns."""

from __future__ import annotations

import numpy as np

N_FFT = 1024
MAX_COLS = 4000
ROWS = 256
FLOOR_DB = -90.0
# (position, blue, green, red): dark blue -> purple -> orange -> pale yellow
_MAP = np.array([(0, 30, 15, 20), (0.35, 120, 30, 90), (0.7, 40, 120, 235), (1, 180, 245, 255)])


def spectrogram_rgba(mono: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """``mono`` ``[N]`` -> BGRA pixels ``[ROWS, T, 4]`` (30 Hz to Nyquist, log-spaced, low at the
    bottom) and
    the hop in samples between columns."""
    n = mono.size
    hop = max(N_FFT // 4, -(-n // MAX_COLS))
    cols = max(1, -(-n // hop))
    pad = np.zeros(cols * hop + N_FFT, np.float32)
    pad[N_FFT // 2 : N_FFT // 2 + n] = mono
    idx = np.arange(cols)[:, None] * hop + np.arange(N_FFT)[None]
    frames = pad[idx] * np.hanning(N_FFT).astype(np.float32)  # (T, N_FFT)
    mag = np.abs(np.fft.rfft(frames, axis=1))[:, 1:]  # (T, F)
    db = 20 * np.log10(mag / (N_FFT / 4) + 1e-9)
    hz = np.geomspace(30.0, rate / 2, ROWS)  # log-frequency rows, as musicians read them
    bins = np.clip(np.round(hz / (rate / N_FFT)).astype(int) - 1, 0, mag.shape[1] - 1)
    level = np.clip((db[:, bins] - FLOOR_DB) / -FLOOR_DB, 0, 1).T[::-1]  # (ROWS, T), low at bottom
    img = np.empty((*level.shape, 4), np.uint8)
    for ch in range(3):
        img[..., ch] = np.interp(level, _MAP[:, 0], _MAP[:, ch + 1]).astype(np.uint8)
    img[..., 3] = 255
    return img, hop

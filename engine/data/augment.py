"""On-the-fly training augmentation of stems, as in the paper, plus remixing across songs.

Per stem (track) of one example, drawn from a ``numpy`` Generator:

- a gain uniform in ×[0.5, 1.5] (linear amplitude);
- a polarity flip with probability 0.1;
- a 7-band parametric EQ: RBJ peaking biquads at 60, 150, 400, 1000, 2500, 6000 and 12000 Hz
  with Q = 1.2 (about one octave wide; neighbouring bands overlap a little), each band's gain
  uniform in ±3 dB for vocals (timbre of a voice is fragile) and ±6 dB for drums, bass and
  other. Bands at or above 0.45 × the sample rate are left out (12 kHz needs 26.7 kHz or more).

The mixture is recomputed as the float64 sum of the augmented stems. Gain and polarity are folded
into the first biquad, so a stem costs one ``sosfilt`` call over ``[C, N]``; the filter starts
in its steady state for the first sample, so crops do not click.

:func:`remix` builds new examples whose four stems come from four different songs of a batch
(each source stem used once), cropping every chosen stem at its own random offset to a common
length.

:func:`lossy` (off by default: ``mp3_prob=0`` in :func:`augment` and :func:`augment_batch`)
round-trips the *mixture* through pedalboard's MP3 writer (LAME, constant bit rate drawn from
:data:`MP3_KBPS`, 128-320 kbit/s) and decoder, aligned by the encoder delay
(:data:`MP3_DELAY`), because that is what the separator meets in released music: an MP3 of the
mix, not a mix of MP3 stems. The stems must still add up to the mixture for the losses, so the
codec error ``e = mp3(mix) - mix`` is split among the stems in the STFT domain, each time-
frequency bin's error going to the stems in proportion to their power there (masks that sum
to one; the last stem takes the remainder, so the sum is exact). Why not the alternatives:
encoding each stem separately gives a mixture that no encoder ever produced (four quantisation
noises, each shaped by one stem's masking instead of the mix's) and costs four encodes;
adding all of ``e`` to "other" would teach the model that the cymbals' missing top octave
(a 128 kbit/s encoder cuts above ~16 kHz) is an inverted copy in "other" while the drums
target keeps highs the input no longer has. Split by power, the cut highs of the cymbals are
taken from the drums, the smeared consonants from the vocals.

Shapes: one example is ``[4, C, N]`` (stems in :data:`STEMS` order; ``C`` may be 1, or the
channel axis may be absent: ``[4, N]``) or a dict ``{stem: [C, N]}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import sosfilt, sosfilt_zi

from engine.constants import MODEL_RATE, STEMS
from engine.errors import StemtokError

EQ_FREQS: tuple[float, ...] = (60.0, 150.0, 400.0, 1000.0, 2500.0, 6000.0, 12000.0)


@dataclass(frozen=True)
class AugmentConfig:
    """What :func:`augment` draws. ``eq_max_db`` is per stem, in :data:`STEMS` order."""

    rate: int = MODEL_RATE
    gain_range: tuple[float, float] = (0.5, 1.5)
    flip_prob: float = 0.1
    eq_freqs: tuple[float, ...] = EQ_FREQS
    eq_q: float = 1.2
    eq_max_db: tuple[float, ...] = (3.0, 6.0, 6.0, 6.0)  # vocals, drums, bass, other
    eq_prob: float = 1.0  # probability that a stem gets the EQ at all
    level_db: tuple[float, float] = (0.0, 0.0)  # one gain for the whole example, drawn in dB


@dataclass(frozen=True)
class Draw:
    """The random choices for one example: ``gains [4]``, ``flips [4]``, ``eq_db [4, B]``."""

    gains: np.ndarray
    flips: np.ndarray
    eq_db: np.ndarray

    @property
    def scales(self) -> np.ndarray:
        """Signed linear factor per stem ``[4]`` (gain with polarity)."""
        return np.where(self.flips, -self.gains, self.gains)


def active_bands(cfg: AugmentConfig) -> tuple[float, ...]:
    """EQ centre frequencies below 0.45 × the sample rate."""
    return tuple(f for f in cfg.eq_freqs if f < 0.45 * cfg.rate)


def draw(rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> Draw:
    """Draw gains, polarity flips and EQ gains for the four stems."""
    n_stems, n_bands = len(STEMS), len(active_bands(cfg))
    gains = rng.uniform(cfg.gain_range[0], cfg.gain_range[1], size=n_stems)
    if cfg.level_db != (0.0, 0.0):  # drawn only when asked: other draws stay as they were
        gains *= 10.0 ** (rng.uniform(*cfg.level_db) / 20.0)
    flips = rng.random(n_stems) < cfg.flip_prob
    limits = np.asarray(cfg.eq_max_db, dtype=np.float64)[:, None]
    eq_db = rng.uniform(-1.0, 1.0, size=(n_stems, n_bands)) * limits
    eq_db *= (rng.random(n_stems) < cfg.eq_prob)[:, None]
    return Draw(gains, flips, eq_db)


def peaking_sos(
    freqs: Sequence[float], gains_db: Sequence[float] | np.ndarray, q: float, rate: int
) -> np.ndarray:
    """Cascade of RBJ-cookbook peaking biquads as second-order sections ``[B, 6]``."""
    sos = np.zeros((len(freqs), 6))
    for i, (f0, g) in enumerate(zip(freqs, gains_db, strict=True)):
        amp = 10.0 ** (g / 40.0)
        w0 = 2.0 * math.pi * f0 / rate
        alpha = math.sin(w0) / (2.0 * q)
        cos = math.cos(w0)
        b = (1.0 + alpha * amp, -2.0 * cos, 1.0 - alpha * amp)
        a = (1.0 + alpha / amp, -2.0 * cos, 1.0 - alpha / amp)
        sos[i] = [b[0] / a[0], b[1] / a[0], b[2] / a[0], 1.0, a[1] / a[0], a[2] / a[0]]
    return sos


def eq_response_db(
    eq_db: Sequence[float] | np.ndarray, freqs_hz: np.ndarray, cfg: AugmentConfig
) -> np.ndarray:
    """Magnitude response in dB of one stem's EQ at ``freqs_hz`` ``[F]``."""
    sos = peaking_sos(active_bands(cfg), eq_db, cfg.eq_q, cfg.rate)
    z = np.exp(-1j * 2.0 * math.pi * np.asarray(freqs_hz, dtype=np.float64) / cfg.rate)
    h = np.ones_like(z)
    for b0, b1, b2, _, a1, a2 in sos:
        h *= (b0 + b1 * z + b2 * z * z) / (1.0 + a1 * z + a2 * z * z)
    return np.asarray(20.0 * np.log10(np.abs(h)))


def _filter_stem(x: np.ndarray, scale: float, eq_db: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """``[C, N]`` → ``[C, N]``: EQ with ``scale`` folded into the first section."""
    if not np.any(eq_db):
        return np.asarray(x * scale, dtype=np.float32)
    sos = peaking_sos(active_bands(cfg), eq_db, cfg.eq_q, cfg.rate)
    sos[0, :3] *= scale
    zi = sosfilt_zi(sos)[:, None, :] * x[:, :1][None, :, :]  # (B, C, 2) steady state
    y, _ = sosfilt(sos, x, axis=-1, zi=zi)
    return np.asarray(y, dtype=np.float32)


def apply(stems: np.ndarray, d: Draw, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Apply a :class:`Draw` to stems ``[4, C, N]`` (or ``[4, N]``); returns the same shape."""
    a = np.asarray(stems, dtype=np.float32)
    flat = a[:, None, :] if a.ndim == 2 else a
    if flat.ndim != 3 or flat.shape[0] != len(STEMS):
        raise StemtokError(f"expected stems [4, C, N] or [4, N], got shape {a.shape}")
    out = np.empty_like(flat)
    for i, scale in enumerate(d.scales):
        if np.any(flat[i]):
            out[i] = _filter_stem(flat[i], float(scale), d.eq_db[i], cfg)
        else:
            out[i] = 0.0
    return out[:, 0, :] if a.ndim == 2 else out


def augment(
    stems: np.ndarray | Mapping[str, np.ndarray],
    rng: np.random.Generator,
    cfg: AugmentConfig = AugmentConfig(),
    *,
    mp3_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one example; returns ``(stems [4, C, N], mixture [C, N])`` (or without ``C``).

    With probability ``mp3_prob`` the example then goes through :func:`lossy` (an MP3 round
    trip of the mixture, its error split among the stems). The mixture is the float64 sum of
    the augmented stems, returned as float32.
    """
    a = stack_stems(stems)
    out = apply(a, draw(rng, cfg), cfg)
    if mp3_prob > 0.0 and rng.random() < mp3_prob:
        out = lossy(out, rng, cfg.rate)
    return out, out.astype(np.float64).sum(axis=0).astype(np.float32)


# ---------------------------------------------------------------- lossy round trips

#: Constant bit rates drawn for :func:`lossy` (kbit/s).
MP3_KBPS: tuple[int, ...] = (128, 160, 192, 224, 256, 320)
#: LAME's encoder delay plus the decoder's (576 + 529 samples), as pedalboard decodes it.
MP3_DELAY = 1105


def mp3_roundtrip(audio: np.ndarray, rate: int, kbps: int) -> np.ndarray:
    """``[C, N]`` (C 1 or 2) through an MP3 file in memory and back, aligned: ``[C, N]``."""
    import io

    from pedalboard.io import AudioFile

    x = np.ascontiguousarray(audio, dtype=np.float32)
    buf = io.BytesIO()
    with AudioFile(buf, "w", rate, x.shape[0], format="mp3", quality=f"{kbps} kbps") as f:
        f.write(x)
    with AudioFile(io.BytesIO(buf.getvalue())) as f:
        y = f.read(f.frames)
    out = np.zeros_like(x)
    got = y[:, MP3_DELAY : MP3_DELAY + x.shape[1]]
    out[:, : got.shape[1]] = got
    return out


def split_error(stems: np.ndarray, error: np.ndarray, n_fft: int = 2048) -> np.ndarray:
    """Share ``error`` ``[C, N]`` among ``stems`` ``[S, C, N]`` by their power per STFT bin.

    Returns ``[S, C, N]`` float64 shares whose sum is ``error`` (the last stem takes the
    remainder, so the sum is exact up to float64 rounding).
    """
    from scipy.signal import istft, stft

    n = error.shape[-1]
    _, _, spec = stft(np.asarray(stems, np.float64), nperseg=n_fft, noverlap=n_fft * 3 // 4)
    _, _, err = stft(np.asarray(error, np.float64), nperseg=n_fft, noverlap=n_fft * 3 // 4)
    power = np.abs(spec) ** 2 + 1e-20  # silent bins are shared evenly
    masks = power / power.sum(axis=0, keepdims=True)  # (S, C, F, T)
    _, shares = istft(masks * err[None], nperseg=n_fft, noverlap=n_fft * 3 // 4)
    out = np.zeros(stems.shape, dtype=np.float64)
    out[:-1] = (
        shares[:-1, :, :n]
        if shares.shape[-1] >= n
        else np.pad(shares[:-1], ((0, 0), (0, 0), (0, n - shares.shape[-1])))
    )
    out[-1] = error - out[:-1].sum(axis=0)
    return out


def lossy(stems: np.ndarray, rng: np.random.Generator, rate: int = MODEL_RATE) -> np.ndarray:
    """Stems ``[4, C, N]`` (or ``[4, N]``) whose sum is the MP3 round trip of their mixture
    at a drawn bit rate (see the module docstring); float32, same shape."""
    a = np.asarray(stems, dtype=np.float64)
    flat = a[:, None, :] if a.ndim == 2 else a
    mix = flat.sum(axis=0)
    kbps = int(rng.choice(MP3_KBPS))
    coded = mp3_roundtrip(mix, rate, kbps).astype(np.float64)
    out = (flat + split_error(flat, coded - mix)).astype(np.float32)
    return out[:, 0, :] if a.ndim == 2 else out


def stack_stems(stems: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
    """A dict ``{stem: [C, N]}`` (missing stems are silent) or ``[4, ...]`` as ``[4, ...]``."""
    if not isinstance(stems, Mapping):
        return np.asarray(stems, dtype=np.float32)
    unknown = set(stems) - set(STEMS)
    if unknown:
        raise StemtokError(f"unknown stem names {sorted(unknown)} (expected {', '.join(STEMS)})")
    ref = np.asarray(next(iter(stems.values())))
    return np.stack([np.asarray(stems.get(s, np.zeros_like(ref)), dtype=np.float32) for s in STEMS])


# ---------------------------------------------------------------- remixing across songs


def remix_sources(batch: int, rng: np.random.Generator) -> np.ndarray:
    """Source song of each stem of each new example ``[B, 4]``.

    For ``batch >= 4`` the four stems of an example come from four different songs and every
    song gives each of its stems exactly once (a random Latin-rectangle assignment); smaller
    batches reuse songs.
    """
    n = len(STEMS)
    perm = rng.permutation(batch)
    if batch >= n:
        offsets = rng.choice(batch, size=n, replace=False)
    else:
        offsets = rng.integers(0, batch, size=n)
    rows = (np.arange(batch)[:, None] + offsets[None, :]) % batch
    return np.asarray(perm[rows])


def _crop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample window of ``[..., N]`` (zero padded when shorter)."""
    n = x.shape[-1]
    if n <= length:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, length - n)]
        return np.pad(x, pad)
    start = int(rng.integers(0, n - length + 1))
    return x[..., start : start + length]


def remix(
    batch: Sequence[np.ndarray | Mapping[str, np.ndarray]] | np.ndarray,
    rng: np.random.Generator,
    *,
    length: int | None = None,
) -> np.ndarray:
    """New examples ``[B, 4, C, length]`` whose stems come from different songs of ``batch``.

    ``batch`` holds B examples (``[4, C, N_b]`` arrays or stem dicts, lengths may differ). Each
    chosen stem is cropped at its own random offset to ``length`` samples (default: the shortest
    example), so stems of different songs line up sample for sample in the output.
    """
    examples = [stack_stems(e) for e in batch]
    if not examples:
        raise StemtokError("cannot remix an empty batch")
    crop = length if length is not None else min(e.shape[-1] for e in examples)
    src = remix_sources(len(examples), rng)
    out = np.zeros((len(examples), *examples[0].shape[:-1], crop), dtype=np.float32)
    for i, row in enumerate(src):
        for s, song in enumerate(row):
            out[i, s] = _crop(examples[song][s], crop, rng)
    return out


def augment_batch(
    batch: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig = AugmentConfig(),
    *,
    remix_prob: float | Sequence[float] | np.ndarray = 0.5,
    mp3_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Training batch ``[B, 4, C, N]`` → ``(stems [B, 4, C, N], mixtures [B, C, N])``: with
    probability ``remix_prob`` the batch is first remixed across songs, then every example is
    augmented (and with probability ``mp3_prob`` made lossy, see :func:`lossy`).

    ``remix_prob`` may also be one probability per example ``[B]``: each example is then
    replaced by its row of a remix of the whole batch on its own draw (its stems come from
    other examples, whatever their songs), the others stay as they are.
    """
    probs = np.asarray(remix_prob, dtype=np.float64)
    if probs.ndim == 0:
        stems = remix(batch, rng) if rng.random() < probs else np.asarray(batch, np.float32)
    else:
        if probs.shape != (len(batch),):
            raise StemtokError(f"{probs.size} remix probabilities for {len(batch)} examples")
        stems = np.array(batch, np.float32)
        rows = rng.random(len(stems)) < probs
        if rows.any():
            stems[rows] = remix(batch, rng)[rows]
    out = np.stack([augment(x, rng, cfg, mp3_prob=mp3_prob)[0] for x in stems])
    return out, out.astype(np.float64).sum(axis=1).astype(np.float32)

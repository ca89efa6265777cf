"""Training objectives of the codec, apart from the model (no loss lives in a ``forward``).

- :func:`spectral_loss`: multi-resolution STFT loss (spectral convergence + log-magnitude L1 at
  three resolutions) plus a 120-band log-mel L1, between two waveforms ``[B, N]``;
- :func:`snr_loss`: negative SNR in dB, for the sample-aligned (mask) decoder;
- :func:`semantic_targets` / :func:`semantic_loss`: what the semantic path must make its codes
  predict at 12.5 frames/s: 12 pitch classes (chroma from a long STFT, 55 Hz-5 kHz), onset
  strength (log-mel flux), loudness, and which stem the audio is;
- :func:`corrupt_codes`: token corruption for the aligned decoder (random substitutions, dropped
  RVQ levels), as the codes it sees at run time come from a language model.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from engine.constants import MODEL_RATE
from engine.models import codec_dsp

RESOLUTIONS: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128))
CHROMA_FFT = 8192
N_STEMS = 4


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``|X|`` with a cheap, finite gradient (complex ``abs`` backward is slow on CPU)."""
    ri = torch.view_as_real(spec)
    return torch.sqrt(ri.pow(2).sum(-1) + 1e-10)


@torch.no_grad()
def reference_spectra(ref: torch.Tensor, rate: int = MODEL_RATE) -> list[torch.Tensor]:
    """Log-magnitudes (and, for the 2048 resolution, the log-mel) of the reference, computed
    once per batch and shared by every loss that compares against it."""
    out = []
    for n_fft, hop in RESOLUTIONS:
        mag = magnitude(codec_dsp.stft(ref, n_fft, hop))
        out.append(mag)
        if n_fft == RESOLUTIONS[0][0]:
            out.append(torch.log(codec_dsp.mel_power(mag**2, 120, n_fft, rate) + 1e-5))
    return out


def spectral_loss(
    est: torch.Tensor, ref: torch.Tensor | list[torch.Tensor], rate: int = MODEL_RATE
) -> torch.Tensor:
    """Multi-resolution STFT + log-mel L1 between ``[B, N]`` waveforms (a scalar).

    ``ref`` is a waveform or its :func:`reference_spectra`. Per resolution: spectral
    convergence + mean |log|E| - log|R||; at n_fft 2048 also the 120-band log-mel L1.
    """
    refs = reference_spectra(ref, rate) if isinstance(ref, torch.Tensor) else ref
    total = est.new_zeros(())
    i = 0
    for n_fft, hop in RESOLUTIONS:
        e = magnitude(codec_dsp.stft(est, n_fft, hop))
        r = refs[i]
        sc = torch.linalg.vector_norm(r - e, dim=(1, 2)) / torch.linalg.vector_norm(r, dim=(1, 2))
        total = total + sc.clamp(max=10.0).mean()
        total = total + (torch.log(e + 1e-5) - torch.log(r + 1e-5)).abs().mean()
        i += 1
        if n_fft == RESOLUTIONS[0][0]:
            me = torch.log(codec_dsp.mel_power(e**2, 120, n_fft, rate) + 1e-5)
            total = total + (me - refs[i]).abs().mean()
            i += 1
    return total / len(RESOLUTIONS)


def snr_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean negative SNR (dB) of ``[B, N]`` estimates; the floor keeps silent references finite."""
    floor = 1e-6 * ref.shape[-1]
    num = ref.pow(2).sum(-1) + floor
    den = (ref - est).pow(2).sum(-1) + floor
    return -(10 * torch.log10(num / den)).mean()


@functools.lru_cache(maxsize=4)
def _chroma_matrix(n_fft: int, rate: int, device: str) -> torch.Tensor:
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    m = np.zeros((12, freqs.size), dtype=np.float32)
    ok = (freqs >= 55.0) & (freqs <= 5000.0)
    pc = np.round(69 + 12 * np.log2(freqs[ok] / 440.0)).astype(int) % 12
    m[pc, np.nonzero(ok)[0]] = 1.0
    return torch.from_numpy(m).to(device)


def semantic_targets(wave: torch.Tensor, stem: torch.Tensor, frame_hop: int) -> torch.Tensor:
    """Targets ``[B, 18, T]`` of ``wave`` ``[B, N]`` (``N = T * frame_hop``), all in [0, 1].

    Rows 0-11 pitch classes (normalised to their frame maximum), 12 onset strength, 13 loudness
    (-80..0 dBFS mapped to 0..1), 14-17 one-hot stem (vocals, drums, bass, other).
    """
    b, n = wave.shape
    t = n // frame_hop
    centred = F.pad(wave[:, frame_hop // 2 :], (0, frame_hop // 2))
    power = codec_dsp.stft(centred, CHROMA_FFT, frame_hop).abs().pow(2)  # (B, F, T)
    chroma = torch.einsum(
        "cf,bft->bct", _chroma_matrix(CHROMA_FFT, MODEL_RATE, str(wave.device)), power
    )
    chroma = chroma / (chroma.amax(dim=1, keepdim=True) + 1e-8)
    mel = codec_dsp.log_mel(wave)  # (B, 120, 4T)
    flux = F.relu(mel[..., 1:] - mel[..., :-1]).mean(1)  # (B, 4T - 1)
    flux = F.pad(flux, (1, 0))
    onset = torch.tanh(F.max_pool1d(flux[:, None], frame_hop // 960)[:, 0] / 2.0)
    rms_db = 10 * torch.log10(wave.reshape(b, t, frame_hop).pow(2).mean(-1) + 1e-8)
    loud = ((rms_db + 80.0) / 80.0).clamp(0.0, 1.0)
    onehot = F.one_hot(stem, N_STEMS).float()[:, :, None].expand(b, N_STEMS, t)
    return torch.cat([chroma, onset[:, None], loud[:, None], onehot], dim=1)


def semantic_loss(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Losses of the semantic head ``[B, 18, T]``: chroma/onset/loudness BCE, stem CE.

    Chroma counts only in frames louder than -50 dBFS (silent frames have no pitch).
    """
    active = (targets[:, 13] > 30.0 / 80.0).float()  # (B, T)
    bce = F.binary_cross_entropy_with_logits(logits[:, :12], targets[:, :12], reduction="none")
    chroma = (bce.mean(1) * active).sum() / active.sum().clamp_min(1.0)
    onset = F.binary_cross_entropy_with_logits(logits[:, 12], targets[:, 12])
    loud = F.binary_cross_entropy_with_logits(logits[:, 13], targets[:, 13])
    stem = F.cross_entropy(logits[:, 14:], targets[:, 14:].argmax(1))
    return {"chroma": chroma, "onset": onset, "loudness": loud, "stem": stem}


def corrupt_codes(
    codes: torch.Tensor, size: int, max_sub: float, p_drop: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt codes ``[B, 2, K, T]`` as an imperfect language model would.

    Each item gets a substitution rate drawn uniformly in ``[0, max_sub]`` (codes replaced by
    uniform random ones) and, with probability ``p_drop``, keeps only its first ``k`` levels
    (``k`` uniform in 1..K). Returns (codes, levels kept ``[B]``).
    """
    b, _, k, _ = codes.shape
    dev = codes.device
    rate = torch.rand(b, generator=gen) * max_sub
    sub = torch.rand(codes.shape, generator=gen) < rate[:, None, None, None]
    noise = torch.randint(0, size, codes.shape, generator=gen)
    out = torch.where(sub.to(dev), noise.to(dev), codes)
    drop = torch.rand(b, generator=gen) < p_drop
    keep = torch.where(drop, torch.randint(1, k + 1, (b,), generator=gen), torch.full((b,), k))
    return out, keep.to(dev)

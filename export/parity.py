"""Parity of the exported graphs against the torch models they came from (run at export time).

Figures (all recorded in ``model_config.json`` under ``parity``):

- ``encoder_max_abs``: prefix and cond, onnxruntime vs torch;
- ``prefill_logits_max_abs``: logits of the prefix's last position;
- ``greedy_tokens_equal`` / ``greedy_token_mismatch``: :func:`engine.runtime.decode.generate`
  against :func:`engine.models.generate.generate` on the test windows (greedy);
- ``generative_snr_db``: waveform decoded by ORT graph + numpy iSTFT against ``Codec.decode``;
- ``aligned_mask_max_abs``: masks of the aligned decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import dsp
from engine.errors import StemtokError
from engine.models.codec import Codec
from engine.models.generate import generate as torch_generate
from engine.models.lm import KVCache, SeparationLM
from engine.runtime.decode import Decoder, generate
from engine.runtime.model import Model

#: Tolerances: float32 graphs reorder sums, so agreement is to rounding, not bit for bit.
LOGIT_TOL = 1e-2
MASK_TOL = 1e-3
SNR_MIN_DB = 60.0


def test_windows(lm: SeparationLM, audio: np.ndarray | None, n: int = 3) -> np.ndarray:
    """``n`` windows ``[n, window]`` of 48 kHz mono ``audio`` (evenly spread), or seeded noise."""
    window = lm.cfg.n_frames * 3840
    if audio is None or audio.shape[-1] < window:
        rng = np.random.default_rng(0)
        return (0.1 * rng.standard_normal((n, window))).astype(np.float32)
    starts = np.linspace(0, audio.shape[-1] - window, n).astype(int)
    return np.stack([audio[s : s + window] for s in starts]).astype(np.float32)


@dataclass(frozen=True)
class Reference:
    """What torch computes on the test windows (made before exporting: see :func:`reference`)."""

    windows: np.ndarray  # (B, N)
    mel: np.ndarray  # (B, n_mels, 4T)
    prefix: np.ndarray  # (B, 1 + M, D)
    cond: np.ndarray | None  # (B, T + 1, D)
    logits: np.ndarray  # (B, K, C) at the prefix's last position
    codes: np.ndarray  # (B, n_tracks, 2, K, T) greedy
    wave: np.ndarray  # (B, N) generative decoding of the vocals codes
    mask: np.ndarray  # (B, F, 8T) aligned-decoder mask of the vocals codes


def reference(lm: SeparationLM, codec: Codec, windows: np.ndarray) -> Reference:
    """Torch outputs on ``windows`` ``[B, N]``.

    Computed before ``torch.onnx.export`` runs: we saw one export sequence leave torch's CPU
    encoder giving batch-dependent results in the same process afterwards, and a reference taken
    first cannot be affected by that.
    """
    mel = dsp.log_mel(windows)  # (B, n_mels, 4T)
    with torch.no_grad():
        pre = lm.prefix(torch.from_numpy(mel))
        cond = lm.condition(pre)
        cache = KVCache.empty(lm.cfg, mel.shape[0], capacity=lm.cfg.max_positions)
        hidden, _ = lm.decode(pre, cache, cond)
        logits = lm.logits(hidden)[:, -1].numpy()
        codes = torch_generate(lm, mel).codes
        vocals = torch.from_numpy(codes[:, 0])
        wave = codec.decode(vocals).numpy()
        mask = codec.mask(*codec.dequantize(vocals), codec.spectrum(torch.from_numpy(windows)))
    return Reference(
        windows,
        mel,
        pre.numpy(),
        None if cond is None else cond.numpy(),
        logits,
        codes,
        wave,
        mask.numpy(),
    )


def check(ref: Reference, folder: Path) -> dict[str, Any]:
    """Run the exported folder on the reference's windows; returns the figures."""
    model = Model(folder, "cpu", threads=None, verify=False)
    out: dict[str, Any] = {"windows": int(ref.windows.shape[0])}
    pre, cond = model.encode(ref.mel)
    err = float(np.abs(pre - ref.prefix).max())
    if ref.cond is not None:
        err = max(err, float(np.abs(cond - ref.cond).max()))
    out["encoder_max_abs"] = err
    logits = Decoder(model, ref.mel.shape[0]).prefill(pre, cond)
    out["prefill_logits_max_abs"] = float(np.abs(logits - ref.logits).max())
    got = generate(model, ref.mel)
    out["greedy_token_mismatch"] = float(np.mean(ref.codes != got.codes))
    out["greedy_tokens_equal"] = bool(np.array_equal(ref.codes, got.codes))
    out.update(_codec_parity(model, ref))
    return out


def _codec_parity(model: Model, ref: Reference) -> dict[str, float]:
    s, windows = model.sizes, ref.windows
    vocals = np.ascontiguousarray(ref.codes[:, 0])  # (B, 2, K, T)
    (ri,) = model.generative.run(None, {"codes": vocals})
    wave = dsp.istft(ri[:, 0] + 1j * ri[:, 1], windows.shape[-1], s.stft_n_fft, s.stft_hop)
    spec = dsp.stft(windows, s.stft_n_fft, s.stft_hop)
    (mask,) = model.aligned.run(None, {"codes": vocals, "mix_logmag": dsp.log_magnitude(spec)})
    return {
        "generative_snr_db": dsp.sdr(ref.wave, wave, eps=1e-20),
        "aligned_mask_max_abs": float(np.abs(mask - ref.mask).max()),
    }


def verify(figures: dict[str, Any]) -> None:
    """Raise when a figure is outside its tolerance."""
    problems = []
    if figures["encoder_max_abs"] > LOGIT_TOL or figures["prefill_logits_max_abs"] > LOGIT_TOL:
        problems.append("encoder/LM outputs differ from torch")
    if not figures["greedy_tokens_equal"]:
        problems.append(f"greedy tokens differ ({figures['greedy_token_mismatch']:.2%})")
    if figures["generative_snr_db"] < SNR_MIN_DB or figures["aligned_mask_max_abs"] > MASK_TOL:
        problems.append("codec decoders differ from torch")
    if problems:
        raise StemtokError(f"parity check failed: {'; '.join(problems)} ({figures})")


def teacher_forced_logits(model: Model, mel: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Logits ``[B, P, K, C]`` after every input position of the sequential layout of ``codes``
    ``[B, n_tracks, 2, K, T]`` (prefix, then ``S c1 S c2 ...`` fed one position at a time)."""
    layout = model.sizes.layout
    inputs, _ = layout.build(codes)  # (B, P, K)
    prefix, cond = model.encode(mel)
    dec = Decoder(model, mel.shape[0])
    dec.prefill(prefix, cond)
    steps = [dec.step(inputs[:, i : i + 1]) for i in range(inputs.shape[1])]
    return np.stack(steps, axis=1)


def precision_parity(ref: Model, half: Model, mel: np.ndarray) -> dict[str, float]:
    """The float16 LM against the float32 one on windows ``mel`` ``[B, n_mels, 4T]``.

    Greedy decoding compounds any flipped near-tie, so the fair per-step figure is teacher
    forced: both graphs read the float32 graph's greedy tokens, and we compare, at every
    position where a code is chosen, the logits of the classes the layout allows there and the
    choice among them. The free-running mismatch is reported too.
    """
    layout = ref.sizes.layout
    codes = generate(ref, mel).codes
    a = teacher_forced_logits(ref, mel, codes)  # (B, P, K, C)
    b = teacher_forced_logits(half, mel, codes)
    per_track = layout.track_codes + 1  # S c_0 .. c_{2T-1}: the last one predicts E
    allowed = np.stack([layout.step_mask(j) for j in range(layout.track_codes)])  # (2T, K, C)
    keep = np.arange(a.shape[1]) % per_track < layout.track_codes
    allow = np.tile(allowed, (layout.n_tracks, 1, 1))[None]  # (1, P', K, C)
    a, b = a[:, keep], b[:, keep]
    diff = np.where(allow, np.abs(a - b), 0.0)
    choice_a = np.where(allow, a, -np.inf).argmax(-1)
    choice_b = np.where(allow, b, -np.inf).argmax(-1)
    free = generate(half, mel).codes
    return {
        "fp16_logits_max_abs": float(diff.max()),
        "fp16_logits_rel": float(diff.max() / (np.abs(np.where(allow, a, 0.0)).max() + 1e-12)),
        "fp16_step_argmax_agreement": float(np.mean(choice_a == choice_b)),
        "fp16_free_running_token_mismatch": float(np.mean(codes != free)),
    }

"""The generative token model on onnxruntime: ``LMSeparator(model_dir).separate(audio, rate)``.

The contract is :class:`engine.runtime.separator.StreamingSeparator`; segments, resampling to
48 kHz and back and the residual come from :class:`engine.runtime.segments.SegmentSeparator`.
This module is the model step, one 48-kHz segment::

    segment [C, n48] ─ mono ─ 4-s windows, overlap 1 s
      per chunk of B windows (one batch):
        log-mel [B, 120, 4T] ─ encoder + LM loop ─ codes [B, 4, 2, K, T]
        aligned:    per channel, STFT of the window ─ masks of all 4 stems (codec_aligned.onnx;
                    a folder with a prior also feeds the teacher's stems of the window, as
                    magnitude-ratio masks, which the decoder refines)
                    ─ masks / their sum (the residual goes to each stem in proportion to its
                      mask) ─ iSTFT                                           [B, 4, C, W]
        generative: codec_generative.onnx ─ iSTFT ─ mono, copied to every channel
      crossfaded overlap-add                                                  [S, C|1, n48]

Crossfades use weights that are normalised by their sum, so stems that add up to the mixture in
every window and segment still add up after the overlap-add.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine import dsp
from engine.constants import STEMS
from engine.runtime import windows as win
from engine.runtime.decode import Cancel, Cancelled, Sampling, generate
from engine.runtime.model import Model
from engine.runtime.segments import SegmentJob, SegmentSeparator
from engine.runtime.separator import FractionProgress

_MASK_FLOOR = 1e-4  # where all masks are ~0 the mixture is shared equally
_TEACHER_BATCH = 1  # windows per teacher graph call (4 held 300 MB more at the peak of a song)
_LM_SHARE = 0.8  # share of a chunk's time the progress bar gives to the LM loop


class LMSeparator(SegmentSeparator):
    """Four-stem separation with an exported token-model folder on onnxruntime.

    Parameters
    ----------
    model_dir : folder made by ``stemtok export`` (default: see
        :func:`engine.runtime.model.default_model_dir`).
    device : ``auto`` (CUDA when it works here), ``cpu`` or ``cuda``.
    threads : intra-op threads per session (default: all cores).
    batch : windows decoded together (bounds memory: it does not grow with the song).
    segment_seconds : a song is separated in crossfaded segments of this length (default 48 s:
        16 windows of 4 s with 1 s overlap, one LM batch), so the working memory does not grow
        with the song; :meth:`stream` yields finished blocks, :meth:`separate` collects them.

    ``separate(..., seed=N)`` samples (temperature 1, top-k 50) instead of greedy decoding:
    another seed re-rolls; ``confidence=True`` fills :attr:`Stems.confidence` from the token
    entropy.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        device: str = "auto",
        threads: int | None = None,
        batch: int = 16,
        segment_seconds: float = 48.0,
    ) -> None:
        super().__init__(batch, segment_seconds)
        self.model = Model(model_dir, device, threads)
        s = self.model.sizes
        self.window, self.overlap = s.window, s.window // 4

    @property
    def folder(self) -> Path:
        return self.model.folder

    @property
    def rate(self) -> int:
        return self.model.sizes.sample_rate

    def confidence_frame_rate(self) -> float:
        return self.model.sizes.layout.n_frames * self.rate / self.window

    def separate48(self, x: np.ndarray, job: SegmentJob, progress: FractionProgress) -> np.ndarray:
        """48-kHz ``[C, N]`` -> ``names``' stems ``[S, C, N]`` (aligned) or ``[S, 1, N]``."""
        mode, names, sink = job.mode, job.names, job.sink
        sampling = Sampling() if job.seed is None else Sampling(1.0, 50, job.seed)
        lead = (len(names), x.shape[0] if mode == "aligned" else 1)
        p = win.plan(x.shape[1], self.window, self.overlap)
        ola = win.OverlapAdd(p, lead, self.overlap)
        mono = x.mean(axis=0)
        for first in range(0, p.n_windows, self.batch):
            count = min(self.batch, p.n_windows - first)

            def tick(done: int, total: int, first: int = first, count: int = count) -> None:
                progress((first + count * _LM_SHARE * done / total) / p.n_windows)

            mel = dsp.log_mel(win.cut(mono, p, first, count))  # (B, n_mels, 4T)
            tokens = generate(self.model, mel, sampling, tick, job.cancel)
            idx = [STEMS.index(n) for n in names]
            codes = np.ascontiguousarray(tokens.codes[:, idx])  # (B, S, 2, K, T)
            for j in range(count):
                if sink is not None:  # mean entropy (S, T) of window first + j
                    h = tokens.entropy[j, idx].mean((1, 2))
                    sink(float(p.starts[first + j]) / self.rate, h)
            if mode == "aligned":
                out = self._aligned(codes, win.cut(x, p, first, count), idx, job.cancel)
            else:
                out = self._generative(codes)
            for j in range(count):
                ola.add(first + j, out[j])
            progress((first + count) / p.n_windows)
        return ola.result()

    def _teacher(self, mix: np.ndarray, cancel: Cancel | None) -> np.ndarray | None:
        """The prior teacher's stems ``[B, 4, C, W]`` of windows ``[B, C, W]`` (None without a
        prior), ``_TEACHER_BATCH`` windows per graph call."""
        prior = self.model.prior
        if prior is None:
            return None
        parts = []
        for first in range(0, len(mix), _TEACHER_BATCH):
            if cancel is not None and cancel():
                raise Cancelled("separation cancelled")
            parts.append(prior.separate_channels(mix[first : first + _TEACHER_BATCH]))
        return np.concatenate(parts)

    def _aligned(
        self, codes: np.ndarray, mix: np.ndarray, idx: list[int], cancel: Cancel | None
    ) -> np.ndarray:
        """codes ``[B, S, 2, K, T]`` of stems ``idx``, mix windows ``[B, C, W]`` -> stems
        ``[B, S, C, W]``."""
        s = self.model.sizes
        b, n, c, w = codes.shape[0], codes.shape[1], mix.shape[1], mix.shape[2]
        out = np.empty((b, n, c, w), np.float32)
        teacher = self._teacher(mix, cancel)
        for j in range(b):
            if cancel is not None and cancel():
                raise Cancelled("separation cancelled")
            spec = dsp.stft(mix[j], s.stft_n_fft, s.stft_hop)  # (C, F, 8T)
            feeds = {
                "codes": np.repeat(codes[j], c, axis=0),  # (4 * C, 2, K, T), stem-major
                "mix_logmag": np.tile(dsp.log_magnitude(spec), (n, 1, 1)),
            }
            if teacher is not None:  # its stems as masks (S * C, F, 8T), stem-major
                prior = dsp.ratio_mask(dsp.stft(teacher[j, idx], s.stft_n_fft, s.stft_hop), spec)
                feeds["prior"] = prior.reshape(-1, *prior.shape[2:])
            (mask,) = self.model.aligned.run(None, feeds)
            mask = mask.reshape(n, c, *mask.shape[1:])  # (4, C, F, 8T)
            mask = (mask + _MASK_FLOOR / n) / (mask.sum(axis=0) + _MASK_FLOOR)
            out[j] = dsp.istft(mask * spec, w, s.stft_n_fft, s.stft_hop)
        return out

    def _generative(self, codes: np.ndarray) -> np.ndarray:
        """codes ``[B, S, 2, K, T]`` -> mono stems ``[B, S, 1, W]`` (one window per graph call,
        so the decoder's activations stay the size of one window's stems)."""
        s = self.model.sizes
        out = np.empty((*codes.shape[:2], 1, self.window), np.float32)
        for j in range(codes.shape[0]):
            (ri,) = self.model.generative.run(None, {"codes": codes[j]})  # (S, 2, F, 8T)
            spec = ri[:, 0] + np.complex64(1j) * ri[:, 1]  # complex64, not complex128
            out[j, :, 0] = dsp.istft(spec, self.window, s.stft_n_fft, s.stft_hop)
        return out

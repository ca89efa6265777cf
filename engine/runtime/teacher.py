"""The discriminative teacher on onnxruntime: ``TeacherSeparator(model_dir).separate(audio, rate)``.

The contract is :class:`engine.runtime.separator.StreamingSeparator`; segments, resampling to
48 kHz and back and the residual come from :class:`engine.runtime.segments.SegmentSeparator`.
This module is the model step, one graph and no token decoding, on one 48-kHz segment::

    segment [C, n48]
      channel groups of the model's channel count M (a stereo teacher, M = 2: the stereo
      pair; 5.1 as three pairs; a mono file on both inputs, the two outputs averaged; a mono
      teacher, M = 1: every channel on its own), in the model folder's windows (3 s
      overlapping 0.75 s in the shipped teacher), B windows of any groups per call:
        numpy STFT (n_fft 2048, the model's hop)          [B, M, F, T] complex
        teacher.onnx on (re, im)                          [B, 2M, F, T] -> masks [B, 4, 2M, F, T]
        stems = complex mask x mixture spectrum           [B, 4, M, F, T]
        optional multichannel Wiener filter ("wiener_iterations" > 0 in the folder): the
        stems' power and 2x2 spatial covariances re-estimated by EM, each stem the Wiener
        estimate of the mixture given them (uses the stereo image between the channels)
        mixture consistency: the residual mix - sum(stems) goes to each stem in proportion to
        its power in that bin ("power") or in equal shares ("equal", the unweighted
        projection), as the model folder says, so the four spectra add up to the mixture's
        numpy iSTFT                                       [B, 4, M, W]
      crossfaded overlap-add                              [4, C, n48]

The teacher is deterministic: ``seed`` is accepted for API compatibility and changes nothing,
and it has only the ``aligned`` mode (its output is always sample-aligned and sums to the input).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import numpy as np

from engine import dsp
from engine.constants import STEMS
from engine.errors import StemtokError
from engine.runtime import windows as win
from engine.runtime.decode import Cancelled
from engine.runtime.model import model_dir as folder_of
from engine.runtime.model import read_config
from engine.runtime.segments import SegmentJob, SegmentSeparator
from engine.runtime.separator import FractionProgress
from engine.runtime.session import create_session, resolve_device

KIND: Final[str] = "teacher"
GRAPH_FILE: Final[str] = "teacher.onnx"
WEIGHTINGS: Final[tuple[str, ...]] = ("power", "equal")  # mixture-consistency residual shares
_POWER_FLOOR = 1e-10  # where every stem is ~silent the residual is shared equally
_LOAD = 1e-3  # diagonal loading of the Wiener filter's spatial covariances (trace 2)


class TeacherModel:
    """The graph of a teacher model folder and the sizes its ``model_config.json`` records.

    Parameters
    ----------
    folder : folder written by ``stemtok export --teacher`` (``"kind": "teacher"``).
    device : ``auto`` (CUDA when it works here), ``cpu`` or ``cuda``.
    threads : intra-op threads (default: all cores).
    verify : compare every file's sha256 with the one recorded at export.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        device: str = "auto",
        threads: int | None = None,
        verify: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.config: dict[str, Any] = read_config(self.folder, verify)
        if self.config.get("kind") != KIND:
            raise StemtokError(
                f"{self.folder}: not a teacher model (kind {self.config.get('kind', 'lm')!r})"
            )
        rates, inference = self.config["rates"], self.config["inference"]
        self.sample_rate: int = int(rates["sample_rate"])
        self.n_fft: int = int(rates["stft_n_fft"])
        self.hop: int = int(rates["stft_hop"])
        self.window: int = int(inference["window_samples"])
        self.overlap: int = int(inference["overlap_samples"])
        self.consistency: str = str(inference.get("consistency", "power"))
        self.wiener_iterations: int = int(inference.get("wiener_iterations", 0))
        self.stems: tuple[str, ...] = tuple(self.config["stems"])
        self.channels: int = int(self.config.get("teacher", {}).get("channels", 1))
        if (
            self.stems != STEMS
            or self.window % self.hop
            or self.consistency not in WEIGHTINGS
            or self.channels not in (1, 2)
        ):
            raise StemtokError(f"{self.folder}: unsupported teacher layout; re-export it")
        self.device = resolve_device(device)
        self.session = create_session(self.folder / GRAPH_FILE, self.device, threads)

    def masks(self, ri: np.ndarray) -> np.ndarray:
        """Mixture STFT (re, im) ``[B, 2M, F, T]`` -> complex masks ``[B, 4, 2M, F, T]``."""
        (out,) = self.session.run(None, {"mix_spec": np.ascontiguousarray(ri, np.float32)})
        masks: np.ndarray = out
        return masks

    def spectra(self, x: np.ndarray, consistent: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``[B, M, N]`` of the model's ``M`` channels (a mono model also takes
        ``[B, N]``; ``N`` a multiple of the hop) -> (mixture spectra ``[B, M, F, T]``, stem
        spectra ``[B, 4, M, F, T]``), complex64 (without the ``M`` axis for ``[B, N]``)."""
        flat = x.ndim == 2
        x3 = x[:, None] if flat else x
        b, c, n = x3.shape
        if c != self.channels:
            raise StemtokError(f"this teacher takes {self.channels} channel(s), got {c}")
        spec = dsp.stft(x3.reshape(b * c, n), self.n_fft, self.hop)
        spec = spec.reshape(b, c, *spec.shape[1:])  # (B, M, F, T)
        ri = np.stack((spec.real, spec.imag), axis=2).reshape(b, 2 * c, *spec.shape[2:])
        m = self.masks(ri)  # (B, S, 2M, F, T)
        m = m.reshape(b, m.shape[1], c, 2, *m.shape[3:])
        est = (m[:, :, :, 0] + np.complex64(1j) * m[:, :, :, 1]) * spec[:, None]  # (B, S, M, F, T)
        if consistent and self.wiener_iterations > 0:
            rounds = self.wiener_iterations
            est = np.stack([wiener(e, sp, rounds) for e, sp in zip(est, spec, strict=True)])
        if consistent:
            est = mixture_consistent(est, spec, self.consistency)
        if flat:
            return spec[:, 0], est[:, :, 0].astype(np.complex64)
        return spec, est.astype(np.complex64)

    def separate_windows(self, x: np.ndarray, consistent: bool = True) -> np.ndarray:
        """48-kHz windows ``[B, M, N]`` (a mono model also takes ``[B, N]``) -> stems
        ``[B, 4, M, N]`` (``[B, 4, N]``), padded to the hop inside."""
        n = x.shape[-1]
        pad = [(0, 0)] * (x.ndim - 1) + [(0, (-n) % self.hop)]
        padded = np.pad(np.asarray(x, np.float32), pad)
        _, est = self.spectra(padded, consistent)
        f, t = est.shape[-2:]
        wave = dsp.istft(est.reshape(-1, f, t), padded.shape[-1], self.n_fft, self.hop)
        return wave.reshape(*est.shape[:-2], -1)[..., :n]

    def separate_channels(self, x: np.ndarray) -> np.ndarray:
        """48-kHz windows ``[B, C, N]`` of any number of channels -> stems ``[B, 4, C, N]``: the
        channels go through the model in groups (:func:`channel_groups`), one graph call each."""
        groups = channel_groups(x.shape[1], self.channels)
        results = [self.separate_windows(x[:, g]) for g in groups]  # (B, 4, M, N) each
        return np.stack(
            [merge_groups(groups, [r[j] for r in results], x.shape[1]) for j in range(len(x))]
        )


def wiener(est: np.ndarray, mix: np.ndarray, iterations: int = 1, eps: float = 1e-10) -> np.ndarray:
    """Multichannel Wiener filtering of stem spectra ``[S, C, F, T]`` given the mixture
    ``[C, F, T]`` (complex; ``C`` 1 or 2), ``iterations`` rounds of EM.

    Each stem is modelled as a zero-mean complex Gaussian with a power ``v[s, f, t]`` (the mean
    over channels of ``|stem|^2``) and, in stereo, a frequency-dependent 2x2 spatial covariance
    ``R[s, f]`` (trace normalised to 2). One round: the mixture's covariance ``sum_s v R``
    (plus ``eps`` I), the Wiener gain ``W_s = v_s R_s Cx^-1`` of every stem, ``stem_s = W_s x``;
    then ``v`` and ``R`` are re-estimated from the stems plus the posterior covariance
    ``(I - W_s) v_s R_s``. For one channel this is the power soft mask ``|s|^2 / sum |s|^2``.
    The spatial covariances are diagonally loaded (1e-3 I), so identical channels (a mono file
    on both inputs) stay invertible; the stems add up to the mixture up to ``eps`` and float32
    rounding (the runtime's mixture consistency removes the rest). The 2x2 algebra is written out element by
    element (about 50 ms per 3-s window of the small teacher per round).
    """
    if est.shape[1] == 1:
        power = np.abs(est[:, 0]) ** 2
        gain = power / (power.sum(axis=0) + eps)
        out: np.ndarray = (gain * mix[0])[:, None].astype(np.complex64)
        return out
    if est.shape[1] != 2:
        raise ValueError("the Wiener filter takes mono or stereo spectra")
    a, b = est[:, 0].astype(np.complex64), est[:, 1].astype(np.complex64)  # (S, F, T)
    x0, x1 = mix[0].astype(np.complex64), mix[1].astype(np.complex64)
    p00 = p11 = np.zeros(a.shape, np.float32)
    p01 = np.zeros(a.shape, np.complex64)
    for _ in range(max(1, iterations)):
        o00 = (a.real**2 + a.imag**2) + p00
        o11 = (b.real**2 + b.imag**2) + p11
        o01 = a * b.conj() + p01
        v = 0.5 * (o00 + o11)  # (S, F, T)
        norm = v.sum(axis=-1, keepdims=True) + eps  # (S, F, 1)
        r00, r11, r01 = (o.sum(axis=-1, keepdims=True) / norm for o in (o00, o11, o01))
        scale = 2.0 / (r00 + r11 + eps)  # trace 2; + _LOAD I keeps a dual-mono R invertible
        r00, r11, r01 = r00 * scale + _LOAD, r11 * scale + _LOAD, r01 * scale
        c00, c11, c01 = v * r00, v * r11, v * r01  # the stems' covariances
        m00, m11, m01 = c00.sum(0) + eps, c11.sum(0) + eps, c01.sum(0)  # the mixture's
        det = np.maximum(m00 * m11 - (m01.real**2 + m01.imag**2), eps * eps)
        i00, i11, i01 = m11 / det, m00 / det, -m01 / det  # its inverse (i10 = conj(i01))
        c10, i10 = c01.conj(), i01.conj()
        g00, g01 = c00 * i00 + c01 * i10, c00 * i01 + c01 * i11
        g10, g11 = c10 * i00 + c11 * i10, c10 * i01 + c11 * i11
        a, b = g00 * x0 + g01 * x1, g10 * x0 + g11 * x1
        p00 = np.maximum(np.real((1 - g00) * c00 - g01 * c10), 0.0).astype(np.float32)
        p11 = np.maximum(np.real(-g10 * c01 + (1 - g11) * c11), 0.0).astype(np.float32)
        p01 = ((1 - g00) * c01 - g01 * c11).astype(np.complex64)
    out = np.stack((a, b), axis=1).astype(np.complex64)
    return out


def mixture_consistent(est: np.ndarray, spec: np.ndarray, weighting: str = "power") -> np.ndarray:
    """Stem spectra ``[B, S, ...]`` corrected so they sum to the mixture ``[B, ...]``.

    ``"power"``: the residual goes to each stem in proportion to its power in the bin (equally
    where all are silent); ``"equal"``: each stem gets the same share (the unweighted
    projection onto consistent estimates).
    """
    residual = spec[:, None] - est.sum(axis=1, keepdims=True)
    if weighting == "equal":
        shared: np.ndarray = est + residual / est.shape[1]
        return shared
    power = np.abs(est) ** 2
    total = power.sum(axis=1, keepdims=True)
    share = (power + _POWER_FLOOR / est.shape[1]) / (total + _POWER_FLOOR)
    out: np.ndarray = est + share * residual
    return out


class TeacherSeparator(SegmentSeparator):
    """Four-stem separation with an exported teacher folder on onnxruntime.

    Parameters
    ----------
    model_dir : teacher folder (default: ``resources/models/teacher``, see
        :func:`engine.runtime.model.model_dir`).
    device : ``auto`` (CUDA when it works here), ``cpu`` or ``cuda``.
    threads : intra-op threads (default: all cores).
    batch : windows per graph call (bounds memory: the time attention of a 6-s window costs
        about 35 MB in the small model, a 3-s window a quarter of that).
    segment_seconds : crossfaded segments of this length bound the working memory.

    ``seed`` changes nothing (the teacher is deterministic), ``confidence`` gives no curves
    (no token entropy), and ``mode`` is only ``aligned``.
    """

    kind: Final[str] = KIND

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        device: str = "auto",
        threads: int | None = None,
        batch: int = 4,
        segment_seconds: float = 48.0,
    ) -> None:
        super().__init__(batch, segment_seconds)
        if model_dir is None:
            model_dir = folder_of(KIND)
        self.model = TeacherModel(model_dir, device, threads)

    @property
    def folder(self) -> Path:
        return self.model.folder

    @property
    def rate(self) -> int:
        return self.model.sample_rate

    def check_mode(self, mode: str) -> None:
        if mode != "aligned":
            raise StemtokError(
                f"the teacher has no {mode!r} mode: it is a discriminative "
                "separator (use --mode aligned)"
            )

    def separate48(self, x: np.ndarray, job: SegmentJob, progress: FractionProgress) -> np.ndarray:
        """48-kHz ``[C, N]`` -> stems ``[4, C, N]``: windows of every channel group, batched."""
        m = self.model
        c, n = x.shape
        p = win.plan(n, m.window, m.overlap)
        groups = channel_groups(c, m.channels)
        olas = [win.OverlapAdd(p, (len(STEMS), m.channels), m.overlap) for _ in groups]
        todo = [(g, k) for g in range(len(groups)) for k in range(p.n_windows)]
        parts = [x[group] for group in groups]  # (M, N) each
        for first in range(0, len(todo), self.batch):
            if job.cancel is not None and job.cancel():
                raise Cancelled("separation cancelled")
            batch = todo[first : first + self.batch]
            windows = np.stack([win.cut(parts[g], p, k, 1)[0] for g, k in batch])  # (B, M, W)
            out = m.separate_windows(windows)  # (B, 4, M, W)
            for (g, k), y in zip(batch, out, strict=True):
                olas[g].add(k, y)
            progress((first + len(batch)) / len(todo))
        return merge_groups(groups, [ola.result() for ola in olas], c)


def merge_groups(groups: list[list[int]], results: list[np.ndarray], n_channels: int) -> np.ndarray:
    """Stems ``[S, M, N]`` of each channel group -> ``[S, n_channels, N]``: every output goes to
    its channel; a channel that filled both inputs of a group gets the mean of the two."""
    first = results[0]
    stems = np.zeros((first.shape[0], n_channels, first.shape[-1]), np.float32)
    for group, y in zip(groups, results, strict=True):
        for j, ch in enumerate(group):
            stems[:, ch] += y[:, j] / group.count(ch)
    return stems


def channel_groups(n_channels: int, model_channels: int) -> list[list[int]]:
    """Which input channels go through a teacher of ``model_channels`` together: each on its own
    for a mono teacher; for a stereo one consecutive pairs (L/R, and C/LFE, Ls/Rs of 5.1), a
    lone last channel (a mono file) on both inputs, its two outputs averaged."""
    if model_channels == 1:
        return [[c] for c in range(n_channels)]
    return [[c, c + 1 if c + 1 < n_channels else c] for c in range(0, n_channels, 2)]

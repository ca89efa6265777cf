"""The library API: ``Separator(model_dir).separate(audio, rate) -> Stems``, and ``stream``.

::

    song (array or file, read block by block) ─ segments of 48 s overlapping by 2 s
      per segment [C, n] @ rate ─ resample ─ [C, n48] ─ mono ─ 4-s windows, overlap 1 s
        per chunk of B windows (one batch):
          log-mel [B, 120, 4T] ─ encoder + LM loop ─ codes [B, 4, 2, K, T]
          aligned:    per channel, STFT of the window ─ masks of all 4 stems (codec_aligned.onnx)
                      ─ masks / their sum (the residual goes to each stem in proportion to its
                        mask) ─ iSTFT                                           [B, 4, C, W]
          generative: codec_generative.onnx ─ iSTFT ─ mono, copied to every channel
        crossfaded overlap-add ─ back to ``rate`` ─ exact length ─ (aligned) the residual
        ``mix - sum(stems)`` that resampling leaves, shared equally
      segments crossfaded; each finished block is yielded (``stream``) or collected (``separate``)

Crossfades use weights that are normalised by their sum, so stems that add up to the mixture in
every window and segment still add up after the overlap-add. Memory is bounded by the segment
(and the batch), not by the song.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from engine import dsp
from engine.audio import read_audio, resample
from engine.constants import MAX_RATE, MIN_RATE, STEMS
from engine.errors import StemtokError
from engine.runtime import windows as win
from engine.runtime.decode import Cancel, Cancelled, Sampling, generate
from engine.runtime.model import Model
from engine.runtime.segments import SEGMENT_OVERLAP_S, collect, stream_segments
from engine.runtime.segments import check_audio as _check_audio
from engine.runtime.sources import ArraySource, Source

Mode = Literal["aligned", "generative"]
FractionProgress = Callable[[float], None]
EntropySink = Callable[[float, np.ndarray], None]  # (window start in s, entropy [S, T] in nats)
_MASK_FLOOR = 1e-4  # where all masks are ~0 the mixture is shared equally
_LM_SHARE = 0.8  # share of a chunk's time the progress bar gives to the LM loop


@dataclass(frozen=True)
class Stems(Mapping[str, np.ndarray]):
    """Stem name -> audio ``[C, N]`` at ``rate`` (the input's rate, length and channels).

    ``confidence`` (only with ``separate(..., confidence=True)``): stem -> ``[F]`` values in
    (0, 1], ``exp(-mean token entropy)`` per codec frame, at ``confidence_rate`` frames/s.
    """

    audio: dict[str, np.ndarray]
    rate: int
    confidence: dict[str, np.ndarray] = field(default_factory=dict)
    confidence_rate: float = 0.0

    def __getitem__(self, key: str) -> np.ndarray:
        return self.audio[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.audio)

    def __len__(self) -> int:
        return len(self.audio)


def _check_stems(stems: Sequence[str]) -> tuple[str, ...]:
    bad = [s for s in stems if s not in STEMS]
    if bad or not stems:
        raise StemtokError(f"unknown stem(s) {', '.join(bad) or '(none)'}: use {', '.join(STEMS)}")
    return tuple(s for s in STEMS if s in stems)


class Separator:
    """Four-stem separation with an exported model folder on onnxruntime.

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
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        device: str = "auto",
        threads: int | None = None,
        batch: int = 16,
        segment_seconds: float = 48.0,
    ) -> None:
        self.model = Model(model_dir, device, threads)
        self.batch = max(1, batch)
        self.segment_seconds = max(segment_seconds, 4 * SEGMENT_OVERLAP_S)
        s = self.model.sizes
        self.window, self.overlap = s.window, s.window // 4

    @property
    def rate(self) -> int:
        return self.model.sizes.sample_rate

    def separate(
        self,
        audio: np.ndarray | str | os.PathLike[str],
        rate: int | None = None,
        *,
        stems: Sequence[str] = STEMS,
        mode: Mode = "aligned",
        seed: int | None = None,
        progress: FractionProgress | None = None,
        cancel: Cancel | None = None,
        confidence: bool = False,
    ) -> Stems:
        """Split ``audio`` ``[C, N]`` at ``rate`` (or a file path) into ``stems`` (in memory; see
        :meth:`stream` for a song of any length).

        ``seed`` samples (temperature 1, top-k 50) instead of greedy decoding: another seed
        re-rolls. ``progress(fraction)`` reports the share done; ``cancel() -> True`` stops
        with :class:`engine.runtime.decode.Cancelled`. ``confidence=True`` also fills
        :attr:`Stems.confidence` from the token entropy.
        """
        chosen = _check_stems(stems)
        if isinstance(audio, (str, os.PathLike)):
            audio, rate = read_audio(Path(audio))
        if rate is None:
            raise StemtokError("give the sample rate of the audio")
        a = _check_audio(audio, int(rate))
        frame_rate = self.model.sizes.layout.n_frames * self.rate / self.window
        conf = (
            _EntropyGrid(
                len(chosen), int(np.ceil(a.shape[1] / int(rate) * frame_rate)) + 1, frame_rate
            )
            if confidence
            else None
        )
        blocks = self.stream(
            ArraySource(a, int(rate)),
            stems=chosen,
            mode=mode,
            seed=seed,
            progress=progress,
            cancel=cancel,
            on_entropy=conf.add if conf else None,
        )
        out = collect(blocks, np.empty((len(chosen), *a.shape), np.float32))
        audio_out = {name: out[i] for i, name in enumerate(chosen)}
        if conf is None:
            return Stems(audio_out, int(rate))
        sure = conf.confidence()
        return Stems(audio_out, int(rate), dict(zip(chosen, sure, strict=True)), frame_rate)

    def stream(
        self,
        source: Source,
        *,
        stems: Sequence[str] = STEMS,
        mode: Mode = "aligned",
        seed: int | None = None,
        progress: FractionProgress | None = None,
        cancel: Cancel | None = None,
        on_entropy: EntropySink | None = None,
    ) -> Iterator[np.ndarray]:
        """Separate ``source`` segment by segment, yielding finished blocks ``[S, C, n]`` (the
        chosen stems, in :data:`STEMS` order) that together cover the song in order.

        Segments of ``segment_seconds`` overlap by 2 s and are crossfaded; a block is yielded
        once no later segment touches it, so memory does not grow with the song.
        ``on_entropy(start_seconds, entropy [S, T])`` receives each LM window's mean token
        entropy (nats) per chosen stem and codec frame.
        """
        if mode not in ("aligned", "generative"):
            raise StemtokError(f"unknown mode {mode!r} (aligned or generative)")
        chosen = _check_stems(stems)
        if not MIN_RATE <= source.rate <= MAX_RATE:
            raise StemtokError(f"sample rate {source.rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
        if source.length < 1:
            raise StemtokError("the audio is empty")
        sampling = Sampling() if seed is None else Sampling(1.0, 50, seed)
        names = STEMS if mode == "aligned" else chosen
        keep = [names.index(n) for n in chosen]
        rate = source.rate

        def separate(piece: np.ndarray, part: FractionProgress, start: int) -> np.ndarray:
            sink = None
            if on_entropy is not None:

                def sink(t: float, h: np.ndarray, t0: float = start / rate) -> None:
                    on_entropy(t0 + t, h[keep])

            out: np.ndarray = self._segment(piece, rate, mode, names, sampling, part, cancel, sink)[
                keep
            ]
            return out

        yield from stream_segments(source, separate, len(chosen), self.segment_seconds, progress)

    def _segment(
        self,
        piece: np.ndarray,
        rate: int,
        mode: Mode,
        names: tuple[str, ...],
        sampling: Sampling,
        progress: FractionProgress,
        cancel: Cancel | None,
        sink: EntropySink | None = None,
    ) -> np.ndarray:
        """One segment ``[C, n]`` at ``rate`` -> stems ``[S, C, n]`` at ``rate``."""
        x = resample(piece, rate, self.rate)  # (C, N48) of this segment
        decoded = self._run(x, mode, names, sampling, progress, cancel, sink)  # (S, C|1, N48)
        return self._finish(piece, rate, decoded, mode, names)

    # ----------------------------------------------------------------- model domain
    def _run(
        self,
        x: np.ndarray,
        mode: Mode,
        names: tuple[str, ...],
        sampling: Sampling,
        progress: FractionProgress | None,
        cancel: Cancel | None,
        sink: EntropySink | None = None,
    ) -> np.ndarray:
        lead = (len(names), x.shape[0] if mode == "aligned" else 1)
        p = win.plan(x.shape[1], self.window, self.overlap)
        ola = win.OverlapAdd(p, lead, self.overlap)
        mono = x.mean(axis=0)
        for first in range(0, p.n_windows, self.batch):
            count = min(self.batch, p.n_windows - first)

            def tick(done: int, total: int, first: int = first, count: int = count) -> None:
                if progress is not None:
                    progress((first + count * _LM_SHARE * done / total) / p.n_windows)

            mel = dsp.log_mel(win.cut(mono, p, first, count))  # (B, n_mels, 4T)
            tokens = generate(self.model, mel, sampling, tick, cancel)
            idx = [STEMS.index(n) for n in names]
            codes = np.ascontiguousarray(tokens.codes[:, idx])  # (B, S, 2, K, T)
            for j in range(count):
                if sink is not None:  # mean entropy (S, T) of window first + j
                    h = tokens.entropy[j, idx].mean((1, 2))
                    sink(float(p.starts[first + j]) / self.rate, h)
            if mode == "aligned":
                out = self._aligned(codes, win.cut(x, p, first, count), cancel)
            else:
                out = self._generative(codes)
            for j in range(count):
                ola.add(first + j, out[j])
            if progress is not None:
                progress((first + count) / p.n_windows)
        return ola.result()

    def _aligned(self, codes: np.ndarray, mix: np.ndarray, cancel: Cancel | None) -> np.ndarray:
        """codes ``[B, 4, 2, K, T]``, mix windows ``[B, C, W]`` -> stems ``[B, 4, C, W]``."""
        s = self.model.sizes
        b, n, c, w = codes.shape[0], codes.shape[1], mix.shape[1], mix.shape[2]
        out = np.empty((b, n, c, w), np.float32)
        for j in range(b):
            if cancel is not None and cancel():
                raise Cancelled("separation cancelled")
            spec = dsp.stft(mix[j], s.stft_n_fft, s.stft_hop)  # (C, F, 8T)
            feeds = {
                "codes": np.repeat(codes[j], c, axis=0),  # (4 * C, 2, K, T), stem-major
                "mix_logmag": np.tile(dsp.log_magnitude(spec), (n, 1, 1)),
            }
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

    # ----------------------------------------------------------------- back to the input
    def _finish(
        self, a: np.ndarray, rate: int, decoded: np.ndarray, mode: Mode, names: tuple[str, ...]
    ) -> np.ndarray:
        """Model-domain stems ``[S, C|1, N48]`` -> ``[S, C, N]`` at ``rate``; in aligned mode the
        residual ``a - sum(stems)`` that resampling leaves is shared equally."""
        c, n = a.shape
        out = np.empty((len(names), c, n), np.float32)
        for i in range(len(names)):
            y = resample(decoded[i], self.rate, rate)[:, :n]  # (C|1, N)
            out[i] = 0.0
            out[i, :, : y.shape[1]] = y
        if mode == "aligned":
            out += (a - out.sum(axis=0)) / len(names)
        return out


class _EntropyGrid:
    """Mean token entropy of overlapping windows on one song-wide frame grid ``[S, F]``."""

    def __init__(self, n_stems: int, n_frames: int, frame_rate: float) -> None:
        self.sum = np.zeros((n_stems, n_frames), np.float64)
        self.count = np.zeros(n_frames, np.float64)
        self.frame_rate = frame_rate

    def add(self, start_s: float, h: np.ndarray) -> None:
        """Entropy ``[S, T]`` of one window starting ``start_s`` seconds into the song."""
        f0 = round(start_s * self.frame_rate)
        n = max(0, min(h.shape[1], self.count.shape[0] - f0))
        self.sum[:, f0 : f0 + n] += h[:, :n]
        self.count[f0 : f0 + n] += 1

    def confidence(self) -> np.ndarray:
        """``exp(-mean entropy)`` ``[S, F]`` in (0, 1] (1 where no window reached)."""
        mean = self.sum / np.maximum(self.count, 1)
        return np.exp(-mean).astype(np.float32)

"""The onnxruntime decode loop: prefill, step, choose, stop — numpy around ``lm.onnx``.

It mirrors :func:`engine.models.generate.generate` (sequential layout) step for step, so greedy
tokens are the torch reference's::

    prefill(<mix>, F_mix) -> KV buffer                         the caller owns the loop
    for track in vocals, drums, bass, other:
        feed S (after the previous track's last choice), then 2T times:
        logits -> layout filter -> choose -> feed the choice; E on level 0 ends the track early
        (the rest repeats its last frame)

The KV cache is one buffer ``[2, n_layers, B, Hkv, S, hd]`` (keys, values), in the LM graph's
precision (float32, or float16 for ``lm_fp16.onnx``). With an ``inplace`` graph each layer's
slice is bound as both input and output of ``lm.onnx`` (IOBinding), so a step writes its new
entries where they belong and nothing is copied: on the CPU the slices share one numpy buffer,
on CUDA they are device buffers made once per batch, so the cache never crosses the bus (only
``x`` goes in and the last position's logits come back). With a ``growing`` graph the past
tensors are fed and the longer present tensors taken back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from engine.errors import StemtokError
from engine.models.layout import TokenLayout
from engine.models.sampling import Cancel, GenerationCancelled, Sampling, Ticker
from engine.progress import StepProgress
from engine.runtime.model import Model

Cancelled = GenerationCancelled  # what callers of the runtime catch


@dataclass(frozen=True)
class Tokens:
    """codes/entropy ``[B, n_tracks, 2, K, T]``; frames ``[B, n_tracks]`` written before E."""

    codes: np.ndarray
    entropy: np.ndarray
    frames: np.ndarray


# --------------------------------------------------------------------------- KV state
class Decoder:
    """Prefill and step of one batch of windows on ``lm.onnx``."""

    def __init__(self, model: Model, batch: int) -> None:
        self.model, self.sizes = model, model.sizes
        s = self.sizes
        self.inplace = s.kv_mode == "inplace"
        size = s.capacity if self.inplace else 0
        self.dtype = model.lm_dtype  # float32, or float16 for lm_fp16.onnx
        shape = (2, s.n_layers, batch, s.n_kv_heads, size, s.head_dim)
        # on CUDA the in-place buffers live on the device (made at the first call); the numpy
        # buffer is the CPU one (shared with onnxruntime) or the growing cache
        on_device = self.inplace and model.device == "cuda"
        self.kv = np.zeros(
            (2, s.n_layers, batch, s.n_kv_heads, 0 if on_device else size, s.head_dim), self.dtype
        )
        self._kv_shape = shape
        self.length = 0
        self.cond: np.ndarray | None = None
        self._binding: Any = None
        names = [f"{kv}_{i}" for kv in ("key", "value") for i in range(s.n_layers)]
        prefix, suffix = ("cache_", "_out") if self.inplace else ("past_", "")
        self.inputs = [prefix + n for n in names]
        self.outputs = [("cache_" + n + suffix) if self.inplace else "present_" + n for n in names]

    def prefill(self, prefix: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Feed the prefix ``[B, 1 + M, D]``; returns logits ``[B, K, C]`` of its last position."""
        self.cond = np.ascontiguousarray(cond, self.dtype)
        return self.feed(prefix)

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Feed ids ``[B, L, K]``; returns the logits ``[B, K, C]`` of the last one."""
        return self.feed(self.model.embed_ids(ids))

    def feed(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[1]
        if self.inplace and self.length + n > self.sizes.capacity:
            raise StemtokError(f"KV buffer of {self.sizes.capacity} positions is full")
        x = np.ascontiguousarray(x, self.dtype)
        logits = self._run_inplace(x) if self.inplace else self._run_growing(x)
        self.length += n
        return np.array(logits, np.float32)  # a copy: ORT may reuse its output memory

    def _buffer(self, kv: int, layer: int) -> Any:
        """One layer's key or value buffer as an ``OrtValue`` on the session's device."""
        if self.model.device == "cuda":
            shape = self._kv_shape[2:]
            value = ort.OrtValue.ortvalue_from_shape_and_type(shape, self.dtype, "cuda", 0)
            value.update_inplace(np.zeros(shape, self.dtype))
            return value
        return ort.OrtValue.ortvalue_from_numpy(self.kv[kv, layer])  # shares memory

    def _run_inplace(self, x: np.ndarray) -> np.ndarray:
        io = self._binding
        if io is None:
            io = self._binding = self.model.lm.io_binding()
            for j, (src, dst) in enumerate(zip(self.inputs, self.outputs, strict=True)):
                value = self._buffer(*divmod(j, self.sizes.n_layers))
                io.bind_ortvalue_input(src, value)
                io.bind_ortvalue_output(dst, value)
            io.bind_cpu_input("cond", self.cond)
            io.bind_output("logits", "cpu")
        io.bind_cpu_input("x", x)
        io.bind_cpu_input("start", np.array([self.length], np.int64))
        self.model.lm.run_with_iobinding(io)
        logits: np.ndarray = io.get_outputs()[-1].numpy()
        return logits

    def _run_growing(self, x: np.ndarray) -> np.ndarray:
        s = self.sizes
        feeds: dict[str, np.ndarray] = {"x": x, "start": np.array([self.length], np.int64)}
        feeds["cond"] = self.cond  # type: ignore[assignment]
        for j, name in enumerate(self.inputs):
            feeds[name] = self.kv[divmod(j, s.n_layers)]
        logits, *caches = self.model.lm.run(["logits", *self.outputs], feeds)
        self.kv = np.stack([np.stack(caches[: s.n_layers]), np.stack(caches[s.n_layers :])])
        out: np.ndarray = logits
        return out


# --------------------------------------------------------------------------- choosing
def entropy_of(masked: np.ndarray) -> np.ndarray:
    """Entropy in nats of softmax over the last axis (``-inf`` entries excluded)."""
    m = masked.max(axis=-1, keepdims=True)
    z = masked - m
    logsum = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    logp = z - logsum
    finite = np.isfinite(logp)
    plogp = np.exp(logp) * np.where(finite, logp, 0.0)  # exp(-inf) = 0: excluded classes add 0
    out: np.ndarray = -plogp.sum(axis=-1)
    return out.astype(np.float32)


def choose(
    logits: np.ndarray, allowed: np.ndarray, sampling: Sampling, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """One class per level: logits ``[R, K, C]``, allowed ``[K, C]`` -> ids, entropy ``[R, K]``."""
    masked = np.where(allowed, logits.astype(np.float32), np.float32(-np.inf))
    entropy = entropy_of(masked)
    if sampling.temperature == 0 or rng is None:
        return masked.argmax(-1).astype(np.int64), entropy
    scaled = masked / sampling.temperature
    if sampling.top_k:
        k = min(sampling.top_k, scaled.shape[-1])
        kth = np.partition(scaled, -k, axis=-1)[..., -k : -k + 1]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    p = np.exp(scaled - scaled.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    cdf = p.reshape(-1, p.shape[-1]).cumsum(-1)
    u = rng.random((cdf.shape[0], 1)) * cdf[:, -1:]
    ids = np.minimum((cdf < u).sum(-1), p.shape[-1] - 1)
    return ids.reshape(p.shape[:-1]).astype(np.int64), entropy


# --------------------------------------------------------------------------- the loop
def _sample_track(
    dec: Decoder,
    pending: np.ndarray,
    layout: TokenLayout,
    sampling: Sampling,
    rng: np.random.Generator | None,
    ticker: Ticker,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``2T`` positions of one track after ``pending`` ``[B, n, K]``: ids/entropy
    ``[B, 2T, K]`` and frames ``[B]`` (the last choice is not fed)."""
    b, k = pending.shape[0], layout.n_levels
    ids = np.zeros((b, layout.track_codes, k), np.int64)
    ent = np.zeros((b, layout.track_codes, k), np.float32)
    ended = np.zeros(b, bool)
    frames = np.full(b, layout.n_frames, np.int64)
    masks = [layout.step_mask(i, sampling.stop_on_end) for i in range(layout.track_codes)]
    for i in range(layout.track_codes):
        logits = dec.step(pending)
        choice, h = choose(logits, masks[i], sampling, rng)
        newly = layout.is_end(choice) & ~ended
        frames[newly], ended = i // 2, ended | newly
        if ended.any():
            fill = layout.filler(ids[:, :i]) if i >= 2 else choice
            choice = np.where(ended[:, None], fill, choice)
            h = np.where(ended[:, None], 0.0, h).astype(np.float32)
        ids[:, i], ent[:, i] = choice, h
        pending = choice[:, None, :]
        ticker.tick()
    return ids, ent, frames


def generate(
    model: Model,
    mel: np.ndarray,
    sampling: Sampling = Sampling(),
    progress: StepProgress | None = None,
    cancel: Cancel | None = None,
) -> Tokens:
    """Tokens of all tracks for a batch of windows, log-mel ``[B, n_mels, 4T]``.

    ``progress(done, total)`` is called after every generated position; ``cancel() -> True``
    stops with :class:`Cancelled`.
    """
    layout, b = model.sizes.layout, mel.shape[0]
    rng = None
    if sampling.temperature > 0:
        rng = np.random.default_rng(sampling.seed)
    ticker = Ticker(layout.n_tracks * layout.track_codes, progress, cancel, "separation cancelled")
    prefix, cond = model.encode(mel)
    dec = Decoder(model, b)
    dec.prefill(prefix, cond)
    shape = (b, layout.n_tracks, layout.track_codes, layout.n_levels)
    ids, ent = np.zeros(shape, np.int64), np.zeros(shape, np.float32)
    frames = np.full((b, layout.n_tracks), layout.n_frames, np.int64)
    pending = np.zeros((b, 0, layout.n_levels), np.int64)
    start = np.full((b, 1, layout.n_levels), layout.start, np.int64)
    for track in range(layout.n_tracks):
        pending = np.concatenate([pending, start], axis=1)
        ids[:, track], ent[:, track], frames[:, track] = _sample_track(
            dec, pending, layout, sampling, rng, ticker
        )
        pending = ids[:, track, -1:]
    return Tokens(layout.deinterleave(ids), layout.unstack(ent).astype(np.float32), frames)

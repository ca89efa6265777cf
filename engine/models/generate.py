"""Generation with the separation LM: prefix -> cache -> four tracks, one token position at a time.

Sequential decoding (the paper)::

    prefill(<mix>, F_mix) -> cache
    for track in vocals, drums, bass, other:       the cache is kept across tracks
        feed S, then 2T times: logits -> filter -> choose -> feed the choice
        a track stops early when level 0 chooses E (the rest repeats its last frame)

Tracks given by the caller (arrangement mode) are fed whole, teacher-forced, in their slot;
the others are generated with them as context. Parallel decoding (ablation A3) runs the tracks
as separate rows from one shared prefix, each with its own start token and heads.

Choosing is greedy by default, or top-k / temperature sampling from a seeded generator (the same
seed gives the same tokens: re-roll = another seed). The entropy of every filtered next-token
distribution is kept as a confidence signal, laid out like the codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.constants import STEMS
from engine.errors import StemtokError
from engine.models.layout import TokenLayout
from engine.models.lm import KVCache, SeparationLM
from engine.models.sampling import Cancel, Sampling, Ticker
from engine.progress import StepProgress


@dataclass(frozen=True)
class Generated:
    """Tokens of all tracks and how sure the model was.

    codes : ``[B, n_tracks, 2, K, T]`` int64.
    entropy : ``[B, n_tracks, 2, K, T]`` float32, nats of each filtered next-token distribution
        (0 for given tracks and for frames repeated after E).
    frames : ``[B, n_tracks]`` frames written before E (T when a track ran its full length).
    """

    codes: np.ndarray
    entropy: np.ndarray
    frames: np.ndarray


@dataclass
class _Context:
    layout: TokenLayout
    sampling: Sampling
    generator: torch.Generator | None
    ticker: Ticker


# --------------------------------------------------------------------------- choosing
def entropy_of(logits: Tensor) -> Tensor:
    """Entropy in nats of ``softmax(logits)`` over the last axis (``-inf`` = excluded)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    plogp = torch.where(torch.isfinite(logp), logp.exp() * logp, torch.zeros_like(logp))
    return -plogp.sum(-1)


def choose(
    logits: Tensor, allowed: Tensor, sampling: Sampling, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Pick one class per level.

    Parameters
    ----------
    logits : ``[R, K, C]`` raw logits of one position.
    allowed : ``[K, C]`` bool, the layout's filter for this step.

    Returns
    -------
    ids : ``[R, K]`` int64, entropy : ``[R, K]`` float32 (of the filtered distribution at T=1).
    """
    masked = logits.float().masked_fill(~allowed, float("-inf"))
    entropy = entropy_of(masked)
    if sampling.temperature == 0:
        return masked.argmax(-1), entropy
    scaled = masked / sampling.temperature
    if sampling.top_k:
        kth = scaled.topk(min(sampling.top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1).flatten(0, 1)  # (R * K, C)
    ids = torch.multinomial(probs, 1, generator=generator).view(logits.shape[:2])
    return ids, entropy


# --------------------------------------------------------------------------- one track
def _sample_track(
    model: SeparationLM,
    cache: KVCache,
    pending: Tensor,
    ctx: _Context,
    head: Tensor | None = None,
    forced: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, KVCache]:
    """Generate the ``2T`` positions of one track after feeding ``pending`` ``[R, n, K]``.

    ``forced`` ``[R, 2T, K]`` with ``-1`` where free: rows/positions taken from the caller.
    Returns ids ``[R, 2T, K]``, entropy ``[R, 2T, K]``, frames ``[R]`` and the cache (the last
    chosen position is not fed yet: the caller feeds it with whatever comes next).
    """
    layout, r = ctx.layout, pending.shape[0]
    ids = torch.zeros(r, layout.track_codes, layout.n_levels, dtype=torch.long)
    ent = torch.zeros(r, layout.track_codes, layout.n_levels)
    ended = torch.zeros(r, dtype=torch.bool)
    frames = torch.full((r,), layout.n_frames, dtype=torch.long)
    for i in range(layout.track_codes):
        logits, cache = model.step(pending.to(cache.k.device), cache, head)
        allowed = torch.from_numpy(layout.step_mask(i, ctx.sampling.stop_on_end))
        choice, h = choose(logits[:, -1].cpu(), allowed, ctx.sampling, ctx.generator)
        if forced is not None:
            keep = forced[:, i] >= 0
            choice, h = torch.where(keep, forced[:, i], choice), h.masked_fill(keep, 0.0)
        newly = torch.from_numpy(layout.is_end(choice.numpy())) & ~ended
        frames[newly], ended = i // 2, ended | newly
        if ended.any():
            fill = torch.from_numpy(layout.filler(ids[:, :i].numpy())) if i >= 2 else choice
            choice, h = torch.where(ended[:, None], fill, choice), h.masked_fill(ended[:, None], 0)
        ids[:, i], ent[:, i] = choice, h
        pending = choice[:, None, :]
        ctx.ticker.tick()
    return ids, ent, frames, cache


# --------------------------------------------------------------------------- public
def generate(
    model: SeparationLM,
    mel: np.ndarray | Tensor,
    *,
    sampling: Sampling = Sampling(),
    given: Mapping[str | int, np.ndarray] | None = None,
    static_cache: bool = True,
    progress: StepProgress | None = None,
    cancel: Cancel | None = None,
) -> Generated:
    """Write the tokens of all tracks for a batch of windows.

    Parameters
    ----------
    model : a :class:`SeparationLM` (switched to eval for the call).
    mel : ``[B, n_mels, Tm]`` log-mel of the mixture windows.
    given : arrangement mode: track (name or index) -> codes ``[B, 2, K, T]`` teacher-forced.
    static_cache : a fixed buffer written in place (True) or a growing cache.
    progress : ``callback(done, total)`` per generated position; ``cancel() -> bool``.
    """
    cfg, layout = model.cfg, model.cfg.layout
    mel_t = torch.as_tensor(mel, dtype=torch.float32, device=model.heads.device)
    forced = _given_tracks(given or {}, layout, mel_t.shape[0])
    n_free = (layout.n_tracks - len(forced)) if cfg.decoding == "sequential" else layout.n_tracks
    generator = None
    if sampling.temperature > 0 and sampling.seed is not None:
        generator = torch.Generator().manual_seed(sampling.seed)
    ticker = Ticker(n_free * layout.track_codes, progress, cancel)
    ctx = _Context(layout, sampling, generator, ticker)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if cfg.decoding == "parallel":
                return _generate_parallel(model, mel_t, forced, static_cache, ctx)
            return _generate_sequential(model, mel_t, forced, static_cache, ctx)
    finally:
        model.train(was_training)


def _given_tracks(
    given: Mapping[str | int, np.ndarray], layout: TokenLayout, batch: int
) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for key, codes in given.items():
        track = STEMS.index(key) if isinstance(key, str) and key in STEMS else key
        if not isinstance(track, int) or not 0 <= track < layout.n_tracks:
            raise StemtokError(f"unknown track {key!r}: use one of {', '.join(STEMS)}")
        want = (batch, 2, layout.n_levels, layout.n_frames)
        if np.shape(codes) != want:
            raise StemtokError(f"given {key} codes have shape {np.shape(codes)}, expected {want}")
        out[track] = np.asarray(codes, dtype=np.int64)
    return out


def _generate_sequential(
    model: SeparationLM, mel: Tensor, forced: dict[int, np.ndarray], static: bool, ctx: _Context
) -> Generated:
    layout, b = ctx.layout, mel.shape[0]
    cache = model.prefill(mel, capacity=model.cfg.max_positions if static else None)
    pending = torch.zeros(b, 0, layout.n_levels, dtype=torch.long)
    shape = (b, layout.n_tracks, layout.track_codes, layout.n_levels)
    ids, ent = torch.zeros(shape, dtype=torch.long), torch.zeros(shape)
    frames = torch.full((b, layout.n_tracks), layout.n_frames, dtype=torch.long)
    start = torch.full((b, 1, layout.n_levels), layout.start, dtype=torch.long)
    for track in range(layout.n_tracks):
        if track in forced:
            fed = torch.from_numpy(layout.track_input(forced[track]))  # (B, 2T+1, K)
            pending, ids[:, track] = torch.cat([pending, fed], 1), fed[:, 1:]
            continue
        pending = torch.cat([pending, start], 1)
        ids[:, track], ent[:, track], frames[:, track], cache = _sample_track(
            model, cache, pending, ctx
        )
        pending = ids[:, track, -1:]
    return _result(layout, ids, ent, frames)


def _generate_parallel(
    model: SeparationLM, mel: Tensor, forced: dict[int, np.ndarray], static: bool, ctx: _Context
) -> Generated:
    layout, b, n = ctx.layout, mel.shape[0], ctx.layout.n_tracks
    cache = model.prefill(mel, capacity=model.cfg.max_positions if static else None).repeat(n)
    head = torch.arange(n, device=cache.k.device).repeat(b)  # row b * n + j -> track j
    starts = torch.from_numpy(layout.track_starts()).repeat(b)  # (B * n,)
    pending = starts[:, None, None].expand(b * n, 1, layout.n_levels).contiguous()
    force = torch.full((b, n, layout.track_codes, layout.n_levels), -1, dtype=torch.long)
    for track, codes in forced.items():
        force[:, track] = torch.from_numpy(layout.interleave(codes))
    ids, ent, frames, _ = _sample_track(model, cache, pending, ctx, head, force.flatten(0, 1))
    shape = (b, n, layout.track_codes, layout.n_levels)
    return _result(layout, ids.view(shape), ent.view(shape), frames.view(b, n))


def _result(layout: TokenLayout, ids: Tensor, ent: Tensor, frames: Tensor) -> Generated:
    """ids/entropy ``[B, n_tracks, 2T, K]`` -> :class:`Generated` laid out like codes."""
    return Generated(
        codes=layout.deinterleave(ids.numpy()),
        entropy=layout.unstack(ent.numpy()).astype(np.float32),
        frames=frames.numpy(),
    )

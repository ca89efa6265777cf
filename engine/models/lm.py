"""Separation LM: a LLaMA-style decoder that writes the four stems' codec tokens.

Input positions (see :mod:`engine.models.layout`)::

    <mix>   F_mix[0 .. M)              S  c(1)  S  c(2)  S  c(3)  S  c(4)
    ids     adapter(Conformer(mel))    ids, each position K codebook indices

The embedding of a token position is the sum of its K level embeddings (special tokens use the
same tables); the mixture features enter as a continuous prefix after the ``<mix>`` embedding.
Blocks are pre-norm (RMSNorm), causal self-attention with rotary positions and grouped-query
heads (``n_kv_heads`` <= ``n_heads``), and a SwiGLU feed-forward. K output heads (one set per
track for parallel decoding, ablation A3) predict the K indices of the next position.

The KV cache is explicit: :class:`KVCache` holds the keys and values of every layer and is passed
into :meth:`SeparationLM.step` and returned by it, never kept in hooks. Two variants:

- growing: the past tensors are concatenated with the new entries (a new tensor each step);
- static (``capacity`` given): a fixed buffer ``[n_layers, B, n_kv_heads, capacity, head_dim]``
  written in place at ``[length, length + L)``; attention runs over the whole buffer with a mask,
  so every step costs the same.

The loss is not here: it lives with the training code (:mod:`engine.training.lm`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.atomic import atomic_path
from engine.errors import StemtokError
from engine.models.conformer import apply_rotary, build_encoder, rotary_tables
from engine.models.lm_config import LMConfig


# --------------------------------------------------------------------------- cache
@dataclass
class KVCache:
    """Keys and values of all layers, ``k``/``v`` ``[n_layers, B, n_kv_heads, S, head_dim]``.

    ``length`` positions are filled. Growing caches have ``S == length``; static caches have a
    fixed ``S`` (the capacity) and are written in place.
    """

    k: Tensor
    v: Tensor
    length: int
    static: bool
    #: aligned mixture features ``[B, T + 1, D]`` (``aligned_mixture`` configs; row T is zero)
    cond: Tensor | None = None

    @classmethod
    def empty(
        cls,
        cfg: LMConfig,
        batch: int,
        *,
        capacity: int | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> KVCache:
        """An empty cache: growing when ``capacity`` is None, else a static buffer."""
        size = 0 if capacity is None else capacity
        shape = (cfg.n_layers, batch, cfg.n_kv_heads, size, cfg.head_dim)
        k = torch.zeros(shape, device=device, dtype=dtype)
        return cls(k, torch.zeros_like(k), 0, capacity is not None)

    @property
    def batch(self) -> int:
        return int(self.k.shape[1])

    def repeat(self, n: int) -> KVCache:
        """Each batch row repeated ``n`` times (row ``b`` -> rows ``b * n .. b * n + n - 1``)."""
        cond = None if self.cond is None else self.cond.repeat_interleave(n, 0)
        return KVCache(
            self.k.repeat_interleave(n, 1),
            self.v.repeat_interleave(n, 1),
            self.length,
            self.static,
            cond,
        )

    def keys_mask(self, n_new: int) -> Tensor:
        """Which keys each of ``n_new`` new queries sees ``[n_new, S_after]`` (bool, causal)."""
        total = self.k.shape[3] if self.static else self.length + n_new
        if self.static and self.length + n_new > total:
            raise ValueError(f"static cache of {total} positions is full")
        queries = torch.arange(self.length, self.length + n_new, device=self.k.device)
        keys = torch.arange(total, device=self.k.device)
        return keys[None, :] <= queries[:, None]


# --------------------------------------------------------------------------- blocks
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).type_as(x)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.w_gate = nn.Linear(dim, hidden, bias=False)
        self.w_up = nn.Linear(dim, hidden, bias=False)
        self.w_down = nn.Linear(hidden, dim, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.drop(self.w_down(F.silu(self.w_gate(x)) * self.w_up(x)))
        return out


class CausalAttention(nn.Module):
    """Causal grouped-query attention with rotary positions and an explicit per-layer cache."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.dropout = cfg.dropout
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wkv = nn.Linear(cfg.dim, 2 * cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        past: tuple[Tensor, Tensor] | None,
        static_at: int | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` ``[B, L, D]`` -> output ``[B, L, D]`` and this layer's keys/values after the step.

        ``past`` are ``[B, n_kv, S, hd]``; ``static_at`` writes the new entries into them in
        place at that position (static cache) instead of concatenating; ``mask`` ``[L, S']``.
        """
        b, n, _ = x.shape
        q = self.wq(x).view(b, n, self.n_heads, self.hd).transpose(1, 2)  # (B, H, L, hd)
        k, v = self.wkv(x).view(b, n, 2, self.n_kv, self.hd).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)  # k, v: (B, Hkv, L, hd)
        if past is not None and static_at is not None:
            past[0][:, :, static_at : static_at + n] = k
            past[1][:, :, static_at : static_at + n] = v
            k, v = past
        elif past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        rep = self.n_heads // self.n_kv
        kr, vr = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)  # (B, H, S, hd)
        if mask is None:
            y = F.scaled_dot_product_attention(q, kr, vr, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask)
        return self.drop(self.wo(y.transpose(1, 2).reshape(b, n, -1))), k, v


class Block(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = CausalAttention(cfg)
        self.ff_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ff = SwiGLU(cfg.dim, cfg.ff_dim, cfg.dropout)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        past: tuple[Tensor, Tensor] | None,
        static_at: int | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        y, k, v = self.attn(self.attn_norm(x), rope, past, static_at, mask)
        x = x + y
        return x + self.ff(self.ff_norm(x)), k, v


# --------------------------------------------------------------------------- model
class SeparationLM(nn.Module):
    """Conformer encoder + adapter + LLaMA decoder + K output heads (per head set)."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layout = cfg.layout
        self.encoder = build_encoder(cfg)
        self.adapter = nn.Linear(cfg.enc_dim, cfg.dim)
        self.embed = nn.Embedding(cfg.n_levels * layout.vocab_size, cfg.dim)
        offsets = torch.arange(cfg.n_levels) * layout.vocab_size
        self.register_buffer("level_offset", offsets, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        n_out = cfg.n_levels * layout.n_classes
        self.heads = nn.Parameter(torch.empty(cfg.head_sets, n_out, cfg.dim))
        self.frame_emb = nn.Embedding(cfg.n_frames + 1, cfg.dim) if cfg.frame_embedding else None
        frames = layout.position_frames(cfg.prefix_frames, cfg.decoding == "parallel")
        self.register_buffer("position_frames", torch.from_numpy(frames), persistent=False)
        # aligned mixture: token positions take the features of their frame; prefix positions
        # point at the zero row T
        token_frames = frames.copy()
        token_frames[: 1 + cfg.prefix_frames] = cfg.n_frames
        self.register_buffer("cond_frames", torch.from_numpy(token_frames), persistent=False)
        self.mix_inject = nn.Linear(cfg.dim, cfg.dim, bias=False) if cfg.aligned_mixture else None
        self._init_decoder()

    def _init_decoder(self) -> None:
        std = 0.02
        for module in [self.adapter, self.embed, *self.blocks]:
            for name, p in module.named_parameters():
                if p.dim() < 2:
                    continue
                scaled = name.endswith(("wo.weight", "w_down.weight"))
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.cfg.n_layers) if scaled else std)
        nn.init.zeros_(self.adapter.bias)
        nn.init.normal_(self.heads, 0.0, std)
        if self.frame_emb is not None:
            nn.init.zeros_(self.frame_emb.weight)  # starts as the plain model
        if self.mix_inject is not None:
            nn.init.zeros_(self.mix_inject.weight)  # starts as the plain model

    def train(self, mode: bool = True) -> SeparationLM:
        super().train(mode)
        if self.cfg.encoder == "frozen":
            self.encoder.eval()  # a frozen extractor never drops out
        return self

    # ----------------------------------------------------------------- pieces
    def embed_ids(self, ids: Tensor) -> Tensor:
        """Ids ``[B, L, K]`` -> summed level embeddings ``[B, L, D]``."""
        offset: Tensor = self.level_offset  # type: ignore[assignment]
        out: Tensor = self.embed(ids + offset).sum(dim=2)
        return out

    def prefix(self, mel: Tensor) -> Tensor:
        """Log-mel ``[B, n_mels, Tm]`` -> prefix embeddings ``[B, 1 + M, D]`` (``<mix>``, F_mix)."""
        b = mel.shape[0]
        mix = torch.full((b, 1, self.cfg.n_levels), self.cfg.layout.mix, device=mel.device)
        feats = self.adapter(self.encoder(mel))  # (B, M, D)
        return torch.cat([self.embed_ids(mix), feats], dim=1)

    def condition(self, pre: Tensor) -> Tensor | None:
        """Aligned mixture features ``[B, T + 1, D]`` from the prefix (None unless the config
        has ``aligned_mixture``): the encoder frames pooled to codec frames, mapped, plus a
        zero row T for positions about no frame."""
        if self.mix_inject is None:
            return None
        b, n, d = pre.shape
        t = self.cfg.n_frames
        feats = pre[:, 1:].reshape(b, t, (n - 1) // t, d).mean(dim=2)
        return torch.cat([self.mix_inject(feats), feats.new_zeros(b, 1, d)], dim=1)

    def decode(
        self, x: Tensor, cache: KVCache | None = None, cond: Tensor | None = None
    ) -> tuple[Tensor, KVCache | None]:
        """Run the blocks over embeddings ``x`` ``[B, L, D]`` -> hidden ``[B, L, D]``.

        Without a cache: one causal pass from position 0. With one: positions continue at
        ``cache.length`` and the returned cache holds the new entries. ``cond`` (from
        :meth:`condition`; else the cache's) is added at the token positions.
        """
        if cond is None and cache is not None:
            cond = cache.cond
        start = 0 if cache is None else cache.length
        n = x.shape[1]
        positions = torch.arange(start, start + n, device=x.device)
        rope = rotary_tables(positions, self.cfg.head_dim, self.cfg.rope_theta)
        mask = None if cache is None else cache.keys_mask(n)
        static_at = start if cache is not None and cache.static else None
        if self.frame_emb is not None:
            table: Tensor = self.position_frames  # type: ignore[assignment]
            x = x + self.frame_emb(table[positions])
        if cond is not None:
            frames: Tensor = self.cond_frames  # type: ignore[assignment]
            x = x + cond[:, frames[positions]]
        x = self.drop(x)
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            past = None if cache is None else (cache.k[i], cache.v[i])
            x, k, v = block(x, rope, past, static_at, mask)
            ks.append(k)
            vs.append(v)
        hidden = self.norm(x)
        if cache is None:
            return hidden, None
        if cache.static:
            return hidden, KVCache(cache.k, cache.v, start + n, True, cond)
        return hidden, KVCache(torch.stack(ks), torch.stack(vs), start + n, False, cond)

    def logits(self, hidden: Tensor, head: Tensor | None = None) -> Tensor:
        """Hidden ``[B, L, D]`` -> logits ``[B, L, K, n_classes]``.

        ``head`` ``[B]`` picks each row's head set (parallel decoding); None uses set 0.
        """
        b, n, _ = hidden.shape
        if head is None:
            out = F.linear(hidden, self.heads[0])
        else:
            out = torch.einsum("bld,bcd->blc", hidden, self.heads[head])
        return out.view(b, n, self.cfg.n_levels, self.cfg.layout.n_classes)

    # ----------------------------------------------------------------- teacher forcing
    def forward(self, mel: Tensor, inputs: Tensor) -> Tensor:
        """Teacher-forced logits of the token part.

        Parameters
        ----------
        mel : ``[B, n_mels, Tm]`` log-mel of the mixture.
        inputs : sequential ``[B, n_tracks * (2T + 1), K]`` or parallel ``[B, n_tracks, 2T + 1, K]``
            ids from :class:`~engine.models.layout.TokenLayout`.

        Returns
        -------
        logits : ``[B, L, K, n_classes]`` or ``[B, n_tracks, 2T + 1, K, n_classes]``, position
            ``i`` predicting target ``i``.
        """
        pre = self.prefix(mel)  # (B, 1 + M, D)
        if self.cfg.decoding == "parallel":
            return self._forward_parallel(pre, inputs)
        x = torch.cat([pre, self.embed_ids(inputs)], dim=1)
        hidden, _ = self.decode(x, cond=self.condition(pre))
        return self.logits(hidden[:, pre.shape[1] :])

    def _forward_parallel(self, pre: Tensor, inputs: Tensor) -> Tensor:
        b, r, n, k = inputs.shape
        pre = pre.repeat_interleave(r, 0)  # (B * R, 1 + M, D)
        x = torch.cat([pre, self.embed_ids(inputs.reshape(b * r, n, k))], dim=1)
        hidden, _ = self.decode(x, cond=self.condition(pre))
        head = torch.arange(r, device=inputs.device).repeat(b)
        out = self.logits(hidden[:, pre.shape[1] :], head)
        return out.view(b, r, n, k, -1)

    # ----------------------------------------------------------------- incremental decoding
    def prefill(self, mel: Tensor, capacity: int | None = None) -> KVCache:
        """Encode the mixture and fill a new cache with the prefix (growing, or static of
        ``capacity`` positions)."""
        pre = self.prefix(mel)
        empty = KVCache.empty(
            self.cfg, pre.shape[0], capacity=capacity, device=pre.device, dtype=pre.dtype
        )
        _, cache = self.decode(pre, empty, self.condition(pre))
        assert cache is not None
        return cache

    def step(
        self, ids: Tensor, cache: KVCache, head: Tensor | None = None
    ) -> tuple[Tensor, KVCache]:
        """Feed ids ``[B, L, K]`` after the cached positions -> logits ``[B, L, K, n_classes]``
        and the cache with them (the same buffers when static)."""
        hidden, new = self.decode(self.embed_ids(ids), cache)
        assert new is not None
        return self.logits(hidden, head), new


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- files
def save_lm(model: SeparationLM, path: str | os.PathLike[str]) -> Path:
    """Write weights and config to ``path`` atomically: ``{"lm_config": {...}, "model": ...}``."""
    with atomic_path(path) as tmp:
        torch.save({"lm_config": model.cfg.to_json(), "model": model.state_dict()}, tmp)
    return Path(path)


def load_lm(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> SeparationLM:
    """Rebuild a model written by :func:`save_lm` (or a training checkpoint), in eval mode."""
    try:
        state = torch.load(Path(path), map_location=device, weights_only=False)
        cfg = LMConfig.from_json(state["lm_config"])
    except (OSError, RuntimeError, EOFError, KeyError, ValueError) as exc:
        raise StemtokError(f"{path}: cannot read the LM ({exc})") from exc
    model = SeparationLM(cfg).to(device)
    model.load_state_dict(state["model"])
    return model.eval()

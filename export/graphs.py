"""Torch modules shaped like the ONNX graphs we ship: what goes in and out of each file.

Each wraps a trained model without copying its weights and computes exactly what the model's own
methods compute, in an export-friendly form (no Python control flow that depends on values, no
cache objects)::

    encoder.onnx      mel [B, n_mels, 4T]                  -> prefix [B, 1 + M, D], cond [B, T + 1, D]
    lm.onnx           x [B, L, D], start [1], cond,        -> logits [B, K, C] (last position),
                      k/v buffers [n_layers, B, Hkv, S, hd]   k/v buffers (see DecoderGraph)
    codec_generative  codes [B, 2, K, T]                   -> spectrum [B, 2, F, 8T] (re, im)
    codec_aligned     codes [B, 2, K, T], mix_logmag [B, F, 8T] (, prior [B, F, 8T]) -> mask [B, F, 8T]

Token embeddings are not in ``lm.onnx``: the runtime sums rows of the exported table
(``embed.npy``) in numpy, so that one graph input ``x`` serves both the continuous prefix (prefill)
and the ids of a step, and the embedding lookup (a gather of K rows) costs nothing worth a graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.codec import Codec
from engine.models.conformer import apply_rotary
from engine.models.lm import Block, CausalAttention, SeparationLM


class EncoderGraph(nn.Module):
    """``mel [B, n_mels, 4T]`` -> ``prefix [B, 1 + M, D]``, ``cond [B, T + 1, D]``."""

    def __init__(self, lm: SeparationLM) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        lm = self.lm  # as SeparationLM.prefix, with the <mix> row built without torch.full
        feats = lm.adapter(lm.encoder(mel))  # (B, M, D)
        ids = torch.full((lm.cfg.n_levels,), lm.cfg.layout.mix, dtype=torch.long)
        offset: Tensor = lm.level_offset  # type: ignore[assignment]
        mix = lm.embed(ids + offset).sum(0)  # (D,)
        pre = torch.cat([mix.expand(feats.shape[0], 1, -1), feats], dim=1)
        cond = self.lm.condition(pre)
        if cond is None:  # configs without aligned mixture: a zero table keeps one signature
            cond = pre.new_zeros(pre.shape[0], self.lm.cfg.n_frames + 1, pre.shape[2])
        return pre, cond


class DecoderGraph(nn.Module):
    """One LM graph for prefill and decode steps.

    Inputs ``x [B, L, D]``, ``start [1]`` (positions already filled), ``cond [B, T + 1, D]`` and
    one key and one value tensor per layer. The runtime keeps them as slices of one buffer
    ``[n_layers, B, Hkv, S, hd]``.

    ``static=True`` (in place): each layer's cache ``[B, Hkv, S, hd]`` has a fixed size S; its
    output is the same tensor with positions ``[start, start + L)`` written (a ScatterElements).
    The runtime binds each output to the memory of its input, so a step writes its L new
    entries in place and the step cost does not grow with the position.

    ``static=False`` (growing): past ``[B, Hkv, P, hd]`` in, present ``[B, Hkv, P + L, hd]`` out
    (a new, longer tensor per step). Outputs: ``logits [B, K, C]`` of the last position, then
    the caches.
    """

    def __init__(self, lm: SeparationLM, static: bool) -> None:
        super().__init__()
        self.lm, self.static = lm, static
        cfg = lm.cfg
        inv = 1.0 / cfg.rope_theta ** (
            torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim
        )
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(
        self, x: Tensor, start: Tensor, cond: Tensor, *caches: Tensor
    ) -> tuple[Tensor, ...]:
        """``caches``: keys of layers 0..n-1 then values of layers 0..n-1, each
        ``[B, Hkv, S, hd]``; returns logits then the caches after the call, in the same order."""
        lm, n, layers = self.lm, x.shape[1], len(self.lm.blocks)
        positions = start + torch.arange(n, dtype=torch.long)  # (L,)
        inv_freq: Tensor = self.inv_freq  # type: ignore[assignment]
        angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
        rope = (torch.cos(angles), torch.sin(angles))  # (L, hd / 2) each
        frames: Tensor = lm.position_frames  # type: ignore[assignment]
        cond_frames: Tensor = lm.cond_frames  # type: ignore[assignment]
        if lm.frame_emb is not None:
            x = x + lm.frame_emb(torch.index_select(frames, 0, positions))
        if lm.mix_inject is not None:
            x = x + torch.index_select(cond, 1, torch.index_select(cond_frames, 0, positions))
        total = caches[0].shape[2] if self.static else caches[0].shape[2] + n
        mask = torch.arange(total, dtype=torch.long)[None, :] <= positions[:, None]  # (L, S)
        ks, vs = [], []
        blocks: list[Block] = list(lm.blocks)  # type: ignore[arg-type]
        for i, block in enumerate(blocks):
            kc, vc = caches[i], caches[layers + i]
            h, k, v = self._attention(block, x, rope, kc, vc, start, mask)
            x = x + h
            x = x + block.ff(block.ff_norm(x))
            ks.append(k)
            vs.append(v)
        hidden = lm.norm(x[:, -1:])  # (B, 1, D)
        logits = F.linear(hidden, lm.heads[0])[:, 0]
        logits = logits.reshape(x.shape[0], lm.cfg.n_levels, lm.cfg.layout.n_classes)
        return (logits, *ks, *vs)

    def _attention(
        self,
        block: Block,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        kc: Tensor,
        vc: Tensor,
        start: Tensor,
        mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One layer's attention; returns its output and the layer's keys/values after it."""
        attn: CausalAttention = block.attn
        b, n, _ = x.shape
        h = block.attn_norm(x)
        q = attn.wq(h).view(b, n, attn.n_heads, attn.hd).transpose(1, 2)  # (B, H, L, hd)
        k, v = attn.wkv(h).view(b, n, 2, attn.n_kv, attn.hd).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)  # k, v: (B, Hkv, L, hd)
        if self.static:
            idx = (start + torch.arange(n, dtype=torch.long))[None, None, :, None]
            idx = idx.expand(b, attn.n_kv, n, attn.hd)
            k = kc.scatter(2, idx, k)  # (B, Hkv, S, hd), entries [start, start + L) new
            v = vc.scatter(2, idx, v)
        else:
            k, v = torch.cat([kc, k], dim=2), torch.cat([vc, v], dim=2)
        # grouped-query attention without repeating K/V: query heads of one KV head form a group
        # (head h uses KV head h // rep, as repeat_interleave does), and MatMul broadcasts
        rep = attn.n_heads // attn.n_kv
        qg = q.reshape(b, attn.n_kv, rep * n, attn.hd)  # (B, Hkv, rep * L, hd)
        scores = torch.matmul(qg, k.transpose(2, 3)) * (attn.hd**-0.5)  # (B, Hkv, rep * L, S)
        scores = scores.reshape(b, attn.n_kv, rep, n, -1).masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1).reshape(b, attn.n_kv, rep * n, -1)
        y = torch.matmul(probs, v).reshape(b, attn.n_heads, n, attn.hd)  # (B, H, L, hd)
        out: Tensor = attn.wo(y.transpose(1, 2).reshape(b, n, -1))
        return out, k, v


class GenerativeGraph(nn.Module):
    """``codes [B, 2, K, T]`` -> spectrum ``[B, 2, F, 8T]`` (real, imaginary); iSTFT in numpy."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, codes: Tensor) -> Tensor:
        out: Tensor = self.codec.decoder(*self.codec.dequantize(codes))
        return out


class AlignedGraph(nn.Module):
    """``codes [B, 2, K, T]`` + ``log(|X_mix| + 1e-5) [B, F, 8T]`` (+ ``prior [B, F, 8T]`` for a
    codec with ``al_prior``) -> mask ``[B, F, 8T]``."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, codes: Tensor, mix_logmag: Tensor, prior: Tensor | None = None) -> Tensor:
        out: Tensor = self.codec.aligned(*self.codec.dequantize(codes), mix_logmag, prior)
        return out

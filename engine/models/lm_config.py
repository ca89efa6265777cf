"""Configuration of the separation LM: one frozen dataclass for the model, one for its training.

``LMConfig`` is stored beside every checkpoint as ``lm_config.json`` and rebuilt with
``LMConfig.from_json(d)`` (tuples come back from JSON lists). Sizes of the token layout (K, V,
T) come from the codec that made the tokens: :meth:`LMConfig.with_codec` sets them.

Named configs (:func:`named`; the presets as data in :data:`PRESETS` and :data:`TRAIN_PRESETS`):

=========  ==================================================================================
``paper``  the paper's sizes: Conformer 8 layers / 12 heads / kernel 31, LLaMA decoder 16 layers
           / 16 heads / width 2048, dropout 0.1, RVQ weights [2, 1, ...], AdamW 5e-4, 2000
           warm-up steps then exponential decay, 4-s crops
``small``  what trains on two CPU cores in under an hour (same recipe; width 256, 4 decoder
           layers, 2 Conformer layers of width 192, 4 mel frames stacked per prefix position)
``a1``     ``small`` with a frozen encoder: the same Conformer, randomly initialised (seeded)
           and never trained; only the linear adapter learns. We have no pretrained speech model
           offline, so this measures "fixed features that were not learned for the task", not
           the paper's HuBERT.
``a2``     ``small`` with the steep RVQ loss weights [8, 4, 3, 2, 2, 2, 2, 2, 1, ...]
``a3``     ``small`` with parallel decoding: each track its own sequence, track-specific start
           token and output heads, no cross-track context
=========  ==================================================================================

``paper-a1`` etc. apply an ablation to the paper sizes.

``frame_embedding`` (on in ``small``, off in ``paper``) is our addition: a learned embedding of the
codec frame index, added to the prefix position that covers frame t and to every token position
that predicts a token of frame t. With rotary positions alone the offset between a token and its
mixture frame differs for every track and frame; the shared frame embedding lets attention find
the right mixture frame early in training, which matters when training is minutes, not epochs.

``aligned_mixture`` (on in ``small``, off in ``paper``) is our second addition: the encoder output
of frame t, through a linear map that starts at zero, is added to the input of every token
position that predicts a token of frame t (the prefix stays as in the paper). A small model trained
for minutes with the prefix alone learned the token prior and hardly looked at the mixture
(next-token accuracy 0.437 with the song's own mixture, 0.429 with another song's, after 736 CPU
steps); this gives it the aligned mixture frame where it is needed, at the cost of one [T, D]
tensor kept beside the KV cache.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final

from engine.models.layout import TokenLayout
from engine.training.schedule import Schedule

SCHEMA: Final[int] = 1
ENCODERS: Final[tuple[str, ...]] = ("conformer", "frozen")
DECODINGS: Final[tuple[str, ...]] = ("sequential", "parallel")
WEIGHTINGS: Final[tuple[str, ...]] = ("first2", "steep")
ABLATIONS: Final[dict[str, dict[str, str]]] = {
    "a1": {"encoder": "frozen"},
    "a2": {"loss_weighting": "steep"},
    "a3": {"decoding": "parallel"},
}
CONFIG_NAMES: Final[tuple[str, ...]] = ("small", "paper", "a1", "a2", "a3")

_STEEP: Final[tuple[float, ...]] = (8.0, 4.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0)


def loss_weights(weighting: str, n_levels: int) -> tuple[float, ...]:
    """RVQ level weights of the loss: ``first2`` = [2, 1, ..., 1]; ``steep`` = [8, 4, 3, 2, 2, 2,
    2, 2, 1, ..., 1] (cut to ``n_levels``)."""
    if weighting == "first2":
        return tuple([2.0] + [1.0] * (n_levels - 1))
    if weighting == "steep":
        return tuple(list(_STEEP[:n_levels]) + [1.0] * max(0, n_levels - len(_STEEP)))
    raise ValueError(f"unknown loss weighting {weighting!r}; choose from {WEIGHTINGS}")


def llama_ff_dim(dim: int, multiple_of: int = 256) -> int:
    """SwiGLU hidden width of LLaMA: 2/3 of 4 * dim, rounded up to ``multiple_of``."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


PRESETS: Final[dict[str, dict[str, Any]]] = {
    "paper": {"name": "paper", "ff_dim": llama_ff_dim(2048)},
    "small": {
        "name": "small",
        "n_levels": 8,
        "codebook_size": 256,
        "enc_dim": 192,
        "enc_layers": 2,
        "enc_heads": 3,
        "enc_stride": 4,
        "dim": 256,
        "n_layers": 4,
        "n_heads": 4,
        "n_kv_heads": 2,
        "ff_dim": llama_ff_dim(256, 64),
        "frame_embedding": True,
        "aligned_mixture": True,
    },
}
TRAIN_PRESETS: Final[dict[str, dict[str, Any]]] = {
    "paper": {},
    # the paper's recipe scaled to a CPU run of about a thousand steps: warm-up 2000 would be all
    # of it, so warm-up is 200 and the LR halves every 2000 steps after it; 4 crops per step
    # (more updates per CPU minute)
    "small": {
        "warmup_steps": 200,
        "decay_half_life": 2000,
        "batch_size": 4,
        "eval_every": 250,
        "eval_batches": 8,
        "checkpoint_minutes": 3.0,
    },
}


@dataclass(frozen=True)
class LMConfig:
    """Every size of the separation LM (encoder, adapter, decoder, heads, loss)."""

    name: str = "paper"
    # token layout (from the codec)
    n_levels: int = 16
    codebook_size: int = 1024
    n_frames: int = 50  # codec frames per track per 4-s window
    n_tracks: int = 4
    # mixture features (engine.dsp.log_mel)
    n_mels: int = 120
    mel_frames: int = 200  # 4 s at 50 frames/s
    mel_shift: float = -7.0  # log-mel is fed as (mel - shift) / scale
    mel_scale: float = 4.0
    # conditional encoder
    encoder: str = "conformer"
    enc_dim: int = 768
    enc_layers: int = 8
    enc_heads: int = 12
    enc_conv_kernel: int = 31
    enc_ff_mult: int = 4
    enc_stride: int = 1  # mel frames stacked per prefix position
    # decoder
    dim: int = 2048
    n_layers: int = 16
    n_heads: int = 16
    n_kv_heads: int = 16
    ff_dim: int = 5632
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.1
    decoding: str = "sequential"
    frame_embedding: bool = False  # not in the paper: see the module docstring
    aligned_mixture: bool = False  # not in the paper: see the module docstring
    # objective
    loss_weighting: str = "first2"
    label_smoothing: float = 0.1
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        _check_choice("encoder", self.encoder, ENCODERS)
        _check_choice("decoding", self.decoding, DECODINGS)
        _check_choice("loss_weighting", self.loss_weighting, WEIGHTINGS)
        if self.dim % self.n_heads or self.enc_dim % self.enc_heads:
            raise ValueError("widths must be multiples of their head counts")
        if self.n_heads % self.n_kv_heads:
            raise ValueError("n_heads must be a multiple of n_kv_heads")
        if (self.dim // self.n_heads) % 2 or (self.enc_dim // self.enc_heads) % 2:
            raise ValueError("rotary positions need an even head width")
        if self.mel_frames % self.enc_stride:
            raise ValueError("mel_frames must be a multiple of enc_stride")
        if self.enc_conv_kernel % 2 == 0:
            raise ValueError("the depthwise kernel must be odd")

    # ----------------------------------------------------------------- derived
    @property
    def layout(self) -> TokenLayout:
        return TokenLayout(self.n_levels, self.codebook_size, self.n_frames, self.n_tracks)

    @property
    def prefix_frames(self) -> int:
        """Encoder frames M in the prefix (``<mix>`` adds one more position)."""
        return self.mel_frames // self.enc_stride

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def head_sets(self) -> int:
        """Sets of K output heads: one, or one per track (parallel decoding)."""
        return self.n_tracks if self.decoding == "parallel" else 1

    @property
    def loss_weights(self) -> tuple[float, ...]:
        return loss_weights(self.loss_weighting, self.n_levels)

    @property
    def max_positions(self) -> int:
        """Longest sequence the model sees: prefix plus the token part."""
        layout = self.layout
        tokens = layout.track_length if self.decoding == "parallel" else layout.seq_length
        return 1 + self.prefix_frames + tokens

    # ----------------------------------------------------------------- constructors
    @classmethod
    def named(cls, name: str) -> LMConfig:
        """The preset ``small`` or ``paper`` (:data:`PRESETS`); ablations: :func:`named`."""
        return cls(**_preset(PRESETS, name))

    def with_codec(self, n_levels: int, codebook_size: int, n_frames: int) -> LMConfig:
        """The same model for tokens of a codec with ``n_levels`` x ``codebook_size`` codes."""
        return dataclasses.replace(
            self,
            n_levels=n_levels,
            codebook_size=codebook_size,
            n_frames=n_frames,
            mel_frames=n_frames * 4,
        )

    def ablation(self, key: str) -> LMConfig:
        """This config with ablation ``a1``, ``a2`` or ``a3`` applied (see the module docstring)."""
        if key not in ABLATIONS:
            raise ValueError(f"unknown ablation {key!r}; choose from {tuple(ABLATIONS)}")
        return dataclasses.replace(self, name=f"{self.name}-{key}", **ABLATIONS[key])  # type: ignore[arg-type]

    # ----------------------------------------------------------------- json
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LMConfig:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"lm config schema {data.get('schema')} is not {SCHEMA}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and batching of LM training (the paper's recipe by default)."""

    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 2000
    decay_half_life: int = 50_000  # steps after warm-up for the LR to halve (exponential decay)
    batch_size: int = 24
    grad_clip: float = 1.0
    checkpoint_minutes: float = 5.0
    eval_every: int = 500
    eval_batches: int = 8
    log_every: int = 20
    seed: int = 0

    def lr_at(self, step: int) -> float:
        """Learning rate at optimiser step ``step`` (0-based): linear warm-up, then exponential."""
        schedule = Schedule("exponential", self.warmup_steps, half_life=self.decay_half_life)
        return self.lr * schedule.factor(step, 0.0)

    @classmethod
    def named(cls, name: str) -> TrainConfig:
        """The recipe of preset ``small`` or ``paper`` (:data:`TRAIN_PRESETS`)."""
        return cls(**_preset(TRAIN_PRESETS, name))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        clean = {k: v for k, v in data.items() if k in known}
        if "betas" in clean:
            clean["betas"] = tuple(clean["betas"])
        return cls(**clean)


def named(name: str) -> tuple[LMConfig, TrainConfig]:
    """Config by name: ``small``, ``paper``, ``a1``/``a2``/``a3`` (ablations of ``small``) or
    ``paper-a1`` style."""
    base, _, key = name.lower().partition("-")
    if base in ABLATIONS and not key:
        base, key = "small", base
    if base not in PRESETS:
        raise ValueError(f"unknown LM config {name!r}; choose from {CONFIG_NAMES}")
    cfg = LMConfig.named(base)
    return (cfg.ablation(key) if key else cfg), TrainConfig.named(base)


def _preset(table: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    if name not in table:
        raise ValueError(f"unknown LM config {name!r}; choose from {tuple(table)}")
    return table[name]


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"LMConfig.{field} must be one of {choices}, got {value!r}")

"""Configuration of the discriminative teacher: the model's sizes, its training recipe and the
named presets (no torch: the runtime and the CLI's help read these without it).

``TeacherConfig`` is saved as ``teacher_config.json`` beside the weights and rebuilt with
:meth:`TeacherConfig.from_dict`; ``TeacherTrainConfig`` as ``teacher_train_config.json`` in the
run folder. Presets (:data:`PRESETS`, by :meth:`TeacherConfig.named`):

=========  ==================================================================================
``small``  trains on a CPU in an hour: width 64, 2 layers, 24 bands, hop 960 (20 ms)
``paper``  the sizes of the BS-RoFormer paper's main model: width 384, 12 layers, 8 heads,
           60 bands, hop 480 (tested for shapes, not trained here)
=========  ==================================================================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

from engine.atomic import write_text
from engine.constants import MODEL_RATE, STEMS
from engine.errors import StemtokError
from engine.training.schedule import Schedule

CONFIG_FILE: Final = "teacher_config.json"
TRAIN_CONFIG_FILE: Final = "teacher_train_config.json"
BLOCK_KINDS: Final = ("transformer", "rnn")
PRESETS: Final[dict[str, dict[str, Any]]] = {
    "small": {},
    "paper": {
        "name": "paper",
        "hop": 480,
        "n_bands": 60,
        "dim": 384,
        "depth": 12,
        "heads": 8,
        "dropout": 0.1,
    },
}
# fields the first teachers lack: these values keep the behaviour they were trained with
_FIRST_TEACHERS: Final[dict[str, Any]] = {"channels": 1, "band_energy": False, "consistent": False}


@dataclass(frozen=True)
class TeacherConfig:
    """Sizes of the band-split RoFormer (frozen; saved as ``teacher_config.json``)."""

    name: str = "small"
    n_fft: int = 2048
    hop: int = 960  # 20 ms: half the frames of the paper's 10 ms, for CPU training
    n_bands: int = 24
    dim: int = 64
    depth: int = 2  # each layer = one block over time + one block over bands
    heads: int = 4
    ff_mult: int = 4
    mask_mult: int = 2
    dropout: float = 0.0
    rope_theta: float = 10000.0
    n_stems: int = len(STEMS)
    channels: int = 2  # 2: stereo in, stereo masks; 1: mono (each channel on its own)
    band_energy: bool = True  # each band's log level is an input beside its normalised shape
    consistent: bool = True  # the stems' masks sum to 1 (the stems add up to the mixture)
    block: str = "transformer"  # or "rnn": a band-split RNN (BiLSTM blocks, as in BSRNN)

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError("dim must split into heads of an even width")
        if self.channels not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        if self.block not in BLOCK_KINDS:
            raise ValueError(f"block must be one of {sorted(BLOCK_KINDS)}")
        if not 2 <= self.n_bands <= self.n_bins // 2:
            raise ValueError(f"n_bands must be in [2, {self.n_bins // 2}]")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @classmethod
    def named(cls, preset: str, /, **overrides: Any) -> TeacherConfig:
        """Preset ``preset`` (``small`` or ``paper``) with ``overrides``."""
        if preset not in PRESETS:
            raise StemtokError(f"unknown teacher config {preset!r} ({' or '.join(PRESETS)})")
        return cls(**(PRESETS[preset] | overrides))

    @classmethod
    def small(cls, **overrides: Any) -> TeacherConfig:
        """``named("small", **overrides)``."""
        return cls.named("small", **overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> TeacherConfig:
        """``named("paper", **overrides)``."""
        return cls.named("paper", **overrides)

    def save(self, folder: Path) -> None:
        write_text(folder / CONFIG_FILE, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> TeacherConfig:
        try:
            return cls.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
        except (OSError, TypeError, ValueError) as exc:
            raise StemtokError(f"{folder}: cannot read {CONFIG_FILE} ({exc})") from exc

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TeacherConfig:
        """A config from its saved fields; fields that older teachers lack keep the behaviour
        those teachers were trained with."""
        return cls(**(_FIRST_TEACHERS | values))


@dataclass(frozen=True)
class TeacherTrainConfig:
    """Optimiser, data and budget of a teacher run (saved as ``teacher_train_config.json``)."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    final_lr_ratio: float = 0.05
    schedule: str = "restarts"  # or "cosine" over the budget (engine.training.schedule)
    cycle_steps: int = 4000
    cycle_decay: float = 0.7
    batch_size: int = 4
    crop_seconds: float = 3.0
    remix_prob: float = 0.5
    # per --data set: share of the crops (None: by length) and remix probability of each crop
    # (None: the whole batch remixed with remix_prob); see engine.training.teacher.SongCrops
    set_weights: tuple[float, ...] | None = None
    set_remix: tuple[float, ...] | None = None
    mp3_prob: float = 0.0  # examples made lossy (an MP3 round trip, augment.lossy)
    level_db: tuple[float, float] = (0.0, 0.0)  # one gain per example (quiet to mastered songs)
    compressed_weight: float = 0.0  # L1 of power-law compressed spectra (|X|^0.3, phase kept)
    loss: str = "l1"  # "l1": time + spectral + MR L1; "sdr": -SDR; "l1+sdr": both
    sdr_weight: float = 0.01  # of the -SDR term (dB) beside the L1 terms in "l1+sdr"
    grad_clip: float = 5.0
    max_steps: int = 10**9
    minutes: float | None = None
    cpu_minutes: float | None = None  # CPU time of the process (all threads), summed over resumes
    checkpoint_minutes: float = 3.0
    refresh_minutes: float = 10.0
    log_every: int = 10
    eval_every: int = 100
    valid_per_song: int = 4  # evenly spaced validation crops from every valid song
    valid_seconds: float = 6.0
    seed: int = 0
    precision: str = "float32"  # "bfloat16": losses under autocast (the masks back in float32)
    workers: int = 0  # processes making batches ahead (engine.training.prefetch); 0: in-line

    @property
    def segment(self) -> int:
        return round(self.crop_seconds * MODEL_RATE)

    @property
    def lr_schedule(self) -> Schedule:
        return Schedule(
            self.schedule, self.warmup, self.final_lr_ratio, self.cycle_steps, self.cycle_decay
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TeacherTrainConfig:
        """A recipe from its saved fields (fields it lacks keep their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

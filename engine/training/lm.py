"""Training of the separation LM on stored codec tokens (docs/dev/TOKENS.md).

Recipe (the paper's): teacher forcing under a causal mask over the sequence of
:mod:`engine.models.layout`; cross-entropy per RVQ level with label smoothing 0.1, the levels
weighted [2, 1, ..., 1] (A2: [8, 4, 3, 2, 2, 2, 2, 2, 1, ...]) and the weighted sum divided by
the sum of the weights (so losses of A2 read on the same scale); AdamW at 5e-4, linear warm-up
then exponential decay; dropout 0.1; 4-s crops (T codec frames + 4T mel frames) drawn at random
from every song and augmented variant of the train split.

The softmax of each position runs over the classes the layout allows there (acoustic codes,
semantic codes, or acoustic codes and E), the same filter that generation applies, and label
smoothing spreads its mass over those classes only.

A run folder holds ``checkpoints/`` (atomic, every few minutes, resumable), ``train.log``,
``metrics.jsonl`` (loss and next-token accuracy per RVQ level), ``lm_config.json``,
``lm_train_config.json`` and, at the end, ``lm.pt`` (weights + config) and ``eval.json``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import StemtokError
from engine.models.layout import TokenLayout
from engine.models.lm import SeparationLM, count_parameters, save_lm
from engine.models.lm_config import LMConfig, TrainConfig
from engine.training import common

TOKENS_FILE = "tokens.json"
MEL_PER_FRAME = 4  # mel frames (50/s) per codec frame (12.5/s)
CROP_FRAMES = 50  # 4 s at 12.5 codec frames/s


# --------------------------------------------------------------------------- stored tokens
def read_meta(tokdir: Path) -> dict[str, Any]:
    """``TOKDIR/tokens.json`` as a dict (a one-line error when it is missing or broken)."""
    path = Path(tokdir) / TOKENS_FILE
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise StemtokError(f"{path}: not found (make tokens with 'stemtok data tokenize')") from exc
    except (OSError, ValueError) as exc:
        raise StemtokError(f"{path}: cannot read the token index ({exc})") from exc
    return meta


def codec_sizes(meta: dict[str, Any]) -> tuple[int, int]:
    """``(n_levels, codebook_size)`` of the codec that made the tokens."""
    codec = next(
        (c for c in (meta.get("codec_config"), meta.get("codec")) if isinstance(c, dict)), {}
    )
    try:
        return int(codec["n_levels"]), int(codec["codebook_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StemtokError("tokens.json names no codec n_levels / codebook_size") from exc


@dataclass(frozen=True)
class Crops:
    """A batch of crops: codes ``[B, 4, 2, K, T]`` int64 and mel ``[B, 120, 4T]`` float32."""

    codes: np.ndarray
    mel: np.ndarray


class TokenBank:
    """Every token file of one split, in memory (int16 codes, float16 mel).

    Files shorter than one crop are left out. Songs are drawn in proportion to the crops they
    hold, so every frame of the split is equally likely.
    """

    def __init__(self, tokdir: Path, split: str, n_frames: int = CROP_FRAMES) -> None:
        self.n_frames = n_frames
        self.names: list[str] = []
        self.codes: list[np.ndarray] = []
        self.mels: list[np.ndarray] = []
        for path in sorted((Path(tokdir) / split).glob("*.npz")):
            with np.load(path) as f:
                codes, mel = f["codes"], f["mel"]
            if codes.ndim != 4 or mel.shape[-1] < MEL_PER_FRAME * codes.shape[-1]:
                raise StemtokError(f"{path}: codes {codes.shape} / mel {mel.shape} do not match")
            if codes.shape[-1] >= n_frames:
                self.names.append(path.stem)
                self.codes.append(codes)
                self.mels.append(mel)
        crops = np.array([c.shape[-1] - n_frames + 1 for c in self.codes], dtype=np.float64)
        self.weights = crops / crops.sum() if len(crops) else crops

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def frames(self) -> int:
        return int(sum(c.shape[-1] for c in self.codes))

    def crop(self, song: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Crop ``[start, start + T)`` of one song: codes ``[4, 2, K, T]``, mel ``[120, 4T]``."""
        t, m = self.n_frames, MEL_PER_FRAME
        codes = self.codes[song][..., start : start + t].astype(np.int64)
        mel = self.mels[song][:, m * start : m * (start + t)].astype(np.float32)
        return codes, mel

    def sample(self, rng: np.random.Generator, batch: int) -> Crops:
        songs = rng.choice(len(self.codes), size=batch, p=self.weights)
        starts = [int(rng.integers(0, self.codes[s].shape[-1] - self.n_frames + 1)) for s in songs]
        return _stack([self.crop(int(s), st) for s, st in zip(songs, starts, strict=True)])

    def fixed(self, n: int, seed: int = 1234) -> Crops:
        """``n`` crops that are the same on every call (for evaluation)."""
        return self.sample(np.random.default_rng(seed), n)


def _stack(items: list[tuple[np.ndarray, np.ndarray]]) -> Crops:
    return Crops(np.stack([c for c, _ in items]), np.stack([m for _, m in items]))


# --------------------------------------------------------------------------- loss
@dataclass(frozen=True)
class LossParts:
    """Weighted loss (scalar, with grad) and per-level loss / next-token accuracy ``[K]``."""

    loss: Tensor
    level_loss: Tensor
    level_acc: Tensor


def lm_loss(
    logits: Tensor, targets: Tensor, allowed: Tensor, weights: Tensor, smoothing: float
) -> LossParts:
    """Masked, label-smoothed cross-entropy per RVQ level.

    Parameters
    ----------
    logits : ``[..., L, K, C]``.
    targets : ``[..., L, K]`` class ids.
    allowed : ``[L, C]`` bool, the classes each position may predict (the layout's filter).
    weights : ``[K]`` level weights; the loss is ``sum_k w_k CE_k / sum_k w_k``.
    """
    k, c = logits.shape[-2:]
    masked = logits.float().masked_fill(~allowed[:, None, :], float("-inf"))
    logp = F.log_softmax(masked, dim=-1).reshape(-1, allowed.shape[0], k, c)
    tgt = targets.reshape(-1, allowed.shape[0], k)
    nll = -logp.gather(-1, tgt[..., None])[..., 0]  # (N, L, K)
    valid = allowed[:, None, :]
    smooth = -logp.masked_fill(~valid, 0.0).sum(-1) / valid.sum(-1)
    per_level = ((1 - smoothing) * nll + smoothing * smooth).mean(dim=(0, 1))  # (K,)
    acc = (logp.argmax(-1) == tgt).float().mean(dim=(0, 1))
    loss = (per_level * weights).sum() / weights.sum()
    return LossParts(loss, per_level.detach(), acc.detach())


@dataclass(frozen=True)
class Batch:
    """Tensors of one step: mel ``[B, 120, Tm]``, inputs and targets in the model's layout."""

    mel: Tensor
    inputs: Tensor
    targets: Tensor


def make_batch(cfg: LMConfig, crops: Crops, device: torch.device) -> Batch:
    """Lay crops out as the model reads them (sequential or parallel, see the layout)."""
    layout = cfg.layout
    if cfg.decoding == "parallel":
        inputs, targets = layout.build_parallel(crops.codes)
    else:
        inputs, targets = layout.build(crops.codes)
    return Batch(
        torch.from_numpy(crops.mel).to(device),
        torch.from_numpy(inputs).to(device),
        torch.from_numpy(targets).to(device),
    )


def allowed_classes(cfg: LMConfig, device: torch.device) -> Tensor:
    """``[L, C]`` bool filter for the targets of one sequence (one track when parallel)."""
    layout: TokenLayout = cfg.layout
    kinds = layout.track_kinds() if cfg.decoding == "parallel" else layout.kinds()
    return torch.from_numpy(layout.class_masks()[kinds]).to(device)


# --------------------------------------------------------------------------- trainer
class LMTrainer(common.Trainer):
    """Model, optimiser and data of one run; :meth:`train_step` does one optimiser step."""

    def __init__(
        self, cfg: LMConfig, tcfg: TrainConfig, tokdir: Path, device: torch.device, out: Path
    ):
        super().__init__()
        self.cfg, self.tcfg, self.device, self.out = cfg, tcfg, device, out
        self.log_every, self.eval_every = tcfg.log_every, tcfg.eval_every
        self.checkpoint_minutes = tcfg.checkpoint_minutes
        self.train_bank = TokenBank(tokdir, "train", cfg.n_frames)
        if not len(self.train_bank):
            raise StemtokError(f"{tokdir}/train: no token files of at least {cfg.n_frames} frames")
        self.valid_bank = TokenBank(tokdir, "valid", cfg.n_frames)
        common.seed_everything(tcfg.seed)
        self.model = SeparationLM(cfg).to(device)
        self.optimizer = _adamw(self.model, tcfg)
        self.allowed = allowed_classes(cfg, device)
        self.weights = torch.tensor(cfg.loss_weights, device=device)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lm_config": self.cfg.to_json(),
            "train_config": self.tcfg.to_json(),
            "rng": {"torch": torch.get_rng_state()},
        }

    def restore(self, path: Path) -> None:
        state = common.load_checkpoint(path, self.device)
        if LMConfig.from_json(state["lm_config"]) != self.cfg:
            raise StemtokError(f"{path}: the checkpoint is of another LM config (use --fresh)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.restore_counters(state)
        torch.set_rng_state(state["rng"]["torch"])

    def losses(self, batch: Batch, model: torch.nn.Module | None = None) -> LossParts:
        with _autocast(self.device):
            logits = (model or self.model)(batch.mel, batch.inputs)
        return lm_loss(logits, batch.targets, self.allowed, self.weights, self.cfg.label_smoothing)

    def train_step(self, budget: common.Budget | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        rng = np.random.default_rng([self.tcfg.seed, self.step])  # resumable without state
        crops = self.train_bank.sample(rng, self.tcfg.batch_size)  # the same on every process
        crops = Crops(self.group.shard(crops.codes), self.group.shard(crops.mel))
        batch = make_batch(self.cfg, crops, self.device)
        lr = self.tcfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        parts = self.forward(lambda model: self.losses(batch, model), self.model)
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(parts.loss)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        return _record(self.step, parts, lr=lr, grad_norm=float(norm))

    @torch.no_grad()
    def evaluate(self, bank: TokenBank, seed: int = 1234) -> dict[str, Any] | None:
        """Teacher-forced loss and next-token accuracy per level on fixed crops of ``bank``."""
        if not len(bank):
            return None
        self.model.eval()
        n, size = self.tcfg.eval_batches, self.tcfg.batch_size
        crops = bank.fixed(n * size, seed)
        parts = []
        for i in range(n):
            sub = Crops(
                crops.codes[i * size : (i + 1) * size], crops.mel[i * size : (i + 1) * size]
            )
            parts.append(self.losses(make_batch(self.cfg, sub, self.device)))
        mean = LossParts(
            *(
                torch.stack([getattr(p, f) for p in parts]).mean(0)
                for f in ("loss", "level_loss", "level_acc")
            )
        )
        return _record(self.step, mean, split="valid")

    def validate(self) -> dict[str, Any] | None:
        ev = self.evaluate(self.valid_bank)
        return None if ev is None else ev | {"score": -ev["loss"]}

    def step_line(self, rec: dict[str, Any]) -> str:
        acc = " ".join(f"{a:.2f}" for a in rec["level_acc"])
        return f"step {rec['step']} loss {rec['loss']:.3f} lr {rec['lr']:.2e} acc/level [{acc}]"

    def valid_line(self, rec: dict[str, Any]) -> str:
        acc = " ".join(f"{a:.2f}" for a in rec["level_acc"])
        return f"valid at step {rec['step']}: loss {rec['loss']:.3f} acc/level [{acc}]"

    def save_model(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_lm(self.model, folder / "lm.pt")


def _adamw(model: SeparationLM, tcfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms, biases); frozen parameters left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": tcfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tcfg.lr, betas=tcfg.betas)


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _record(step: int, parts: LossParts, **extra: Any) -> dict[str, Any]:
    return {
        "step": step,
        "loss": round(float(parts.loss.detach()), 5),
        "level_loss": [round(float(x), 4) for x in parts.level_loss],
        "level_acc": [round(float(x), 4) for x in parts.level_acc],
        **extra,
    }


# --------------------------------------------------------------------------- driver
def train_lm(
    cfg: LMConfig,
    tcfg: TrainConfig,
    tokdir: str | Path,
    out: str | Path,
    *,
    max_steps: int | None = None,
    minutes: float | None = None,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    echo: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Train (or resume) the LM in ``out`` on the tokens in ``tokdir``; returns the final eval.

    ``cfg`` is adapted to the codec sizes recorded in ``tokdir/tokens.json``.
    """
    tokdir, out = Path(tokdir), Path(out)
    cfg = cfg.with_codec(*codec_sizes(read_meta(tokdir)), cfg.n_frames)
    dev = common.select_device(device)
    log = common.RunLog(out, echo)
    try:
        trainer = LMTrainer(cfg, tcfg, tokdir, dev, out)
        ckpt = common.latest_checkpoint(out) if resume else None
        if ckpt is not None:
            trainer.restore(ckpt)
            log.line(f"resumed from {ckpt.name} (step {trainer.step})")
        common.write_json(out / "lm_config.json", cfg.to_json())
        common.write_json(out / "lm_train_config.json", tcfg.to_json())
        log.line(_intro(trainer, dev))
        budget = common.Budget(max_steps or 10**9, minutes)
        common.stop_on_sigterm()
        common.run(trainer, budget, log, progress)
        final = trainer.evaluate(trainer.valid_bank) or {"step": trainer.step}
        if "loss" in final:
            log.metrics(final)
            log.line(trainer.valid_line(final))
        common.write_json(out / "eval.json", {**final, "elapsed_s": round(trainer.elapsed, 1)})
        log.line(
            f"done at step {trainer.step} after {trainer.elapsed / 60:.1f} min: {out / 'lm.pt'}"
        )
        return final
    finally:
        log.close()


def _intro(trainer: LMTrainer, dev: torch.device) -> str:
    cfg, bank = trainer.cfg, trainer.train_bank
    return (
        f"LM '{cfg.name}' on {dev}: {count_parameters(trainer.model) / 1e6:.2f} M parameters "
        f"({count_parameters(trainer.model, True) / 1e6:.2f} M trained), K={cfg.n_levels} "
        f"V={cfg.codebook_size}, {len(bank)} train files ({bank.frames} frames), "
        f"{len(trainer.valid_bank)} valid files"
    )


# --------------------------------------------------------------------------- synthetic tokens
def write_synthetic_tokens(
    tokdir: str | Path,
    *,
    songs: dict[str, int],
    frames: int = 120,
    n_levels: int = 8,
    codebook_size: int = 256,
    seed: int = 0,
) -> Path:
    """Write a token set in the stored layout whose mel is a function of the codes.

    For tests and for developing before real tokens exist. Level-0 codes of each track and
    path hold for a few frames then jump; level ``l`` is ``(l + 1) * level 0 + small noise``.
    Each track owns a quarter of the 120 mel bands, where the level-0 acoustic code of its
    codec frame draws a fixed random spectrum; the mel is the log of the sum, scaled to the
    range of real log-mel (about -14 to 0). So level-0 acoustic codes are readable from the
    mixture, the other levels from level 0, and the semantic path only from its own history.
    ``songs`` maps split -> number of songs.
    """
    tokdir = Path(tokdir)
    rng = np.random.default_rng(seed)
    band = np.arange(120) // 30  # (120,) which track owns each band
    patterns = rng.gamma(0.7, 1.0, size=(4, codebook_size, 120)).astype(np.float32)
    patterns *= band[None, None, :] == np.arange(4)[:, None, None]
    entries = []
    for split, count in songs.items():
        (tokdir / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            codes = _synthetic_codes(rng, frames, n_levels, codebook_size)
            spec = patterns[np.arange(4)[:, None], codes[:, 0, 0]].sum(0)  # (T, 120)
            mel = 2.0 * np.log(np.repeat(spec, MEL_PER_FRAME, axis=0).T + 1e-3) - 4.0
            name = f"{split}-{i:03d}"
            np.savez(
                tokdir / split / f"{name}.npz",
                codes=codes.astype(np.int16),
                mel=mel.astype(np.float16),
            )
            entries.append({"split": split, "song": name, "variant": 0, "frames": frames})
    codec = {"name": "synthetic", "n_levels": n_levels, "codebook_size": codebook_size}
    meta = {
        "codec_config": codec,
        "codec": None,
        "set": None,
        "songs": entries,
        "augmentation": {"0": None},
    }
    common.write_json(tokdir / TOKENS_FILE, meta)
    return tokdir


def _synthetic_codes(rng: np.random.Generator, frames: int, k: int, v: int) -> np.ndarray:
    """Codes ``[4, 2, K, T]`` with held level-0 values and levels derived from level 0."""
    jumps = rng.random((4, 2, frames)) < 0.3
    jumps[..., 0] = True
    fresh = rng.integers(0, v, size=(4, 2, frames))
    idx = np.maximum.accumulate(np.where(jumps, np.arange(frames), 0), axis=-1)
    level0 = np.take_along_axis(fresh, idx, axis=-1)  # (4, 2, T)
    mult = np.arange(1, k + 1)[None, None, :, None]
    noise = (rng.random((4, 2, k, frames)) < 0.1) * rng.integers(1, 3, size=(4, 2, k, frames))
    noise[:, :, 0] = 0
    return (level0[:, :, None, :] * mult + noise) % v

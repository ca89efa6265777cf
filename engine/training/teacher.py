"""Training recipe of the discriminative teacher (``stemtok train teacher``).

One step, on a batch of crops (stereo for a stereo teacher, mono for a mono one) of all four
stems of a song:

1. augmentation as for the LM's data (``engine.data.augment``): with probability 0.5 the batch
   is first remixed across songs (each example's four stems from four different songs; or,
   with ``set_remix``, each example on its own draw with its data set's probability), then
   every stem gets a gain in x[0.5, 1.5], a 10 % polarity flip and a 7-band EQ; the mixture is
   the sum of the augmented stems;
2. the STFT of the mixture (n_fft 2048, the config's hop) goes through the band-split RoFormer,
   which returns a complex mask per stem and channel (summing to 1 over the stems); stem
   spectra = mask x mixture spectrum, inverted by the iSTFT;
3. loss: L1 between estimated and true waveforms, L1 between their complex spectra at the
   model's resolution (n_fft 2048), and L1 between magnitudes at a short resolution (512/128)
   for transients. BS-RoFormer's recipe uses five magnitude resolutions; on a CPU the other
   four cost more than the model itself (measured: 3.3 s of a 4.3 s forward pass), so they
   are left out. Optionally (``compressed_weight``) L1 between power-law compressed complex
   spectra (|X|^0.3), which weighs quiet bins more than the plain spectral L1.

Validation: SI-SDR per stem on a fixed batch of the ``valid`` split, beside the mixture's own
SI-SDR (the floor). Runs are resumable, stop at ``max_steps`` or a time budget, and end by
writing ``OUT/teacher.pt`` + ``OUT/teacher_config.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from engine.constants import MODEL_RATE, STEMS
from engine.data import augment
from engine.dsp import rms_db
from engine.errors import StemtokError
from engine.models import codec_dsp
from engine.models.codec_losses import magnitude
from engine.models.roformer import BandSplitRoformer, apply_masks, save_teacher, spec_input
from engine.models.teacher_config import TRAIN_CONFIG_FILE, TeacherConfig, TeacherTrainConfig
from engine.training import common
from engine.training.codec_data import StemBank
from engine.training.prefetch import PrefetchCrops

MR_RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 128),)  # fine time; the model's own is 2048


# --------------------------------------------------------------------------- data
class SongCrops:
    """Random crops ``[4, C, N]`` of all stems of a song (silent mixtures mostly skipped; ``C``
    the bank's channels).

    Songs are drawn by length; with ``set_weights`` (one per set of the bank, see
    ``StemBank.sets``) each set gets that share of the crops, its songs still drawn by length
    inside it. ``set_remix`` (one probability per set) remixes every crop on its own draw, with
    its set's probability, instead of the whole batch with ``remix_prob`` (RemixIT-style
    self-training: pseudo-labelled songs always remixed, true stems sometimes).
    """

    def __init__(
        self,
        bank: StemBank,
        n: int,
        rng: np.random.Generator,
        set_weights: Sequence[float] | None = None,
        set_remix: Sequence[float] | None = None,
    ) -> None:
        self.bank, self.n, self.rng = bank, n, rng
        self.set_weights, self.set_remix = set_weights, set_remix
        self.reweight()

    def reweight(self) -> None:
        """Recompute song weights (after the bank grew)."""
        self.weights = song_weights(self.bank.lengths, self.bank.sets, self.set_weights)

    def crop(self) -> tuple[np.ndarray, int]:
        """A crop ``[4, C, N]`` and the index of its song."""
        for _ in range(20):
            song = int(self.rng.choice(len(self.weights), p=self.weights))
            start = int(self.rng.integers(0, max(1, int(self.bank.lengths[song]) - self.n + 1)))
            crop = self.bank.crop(song, start, self.n)
            if rms_db(crop.sum(axis=0)) > -45.0:
                break
        return (crop if crop.ndim == 3 else crop[:, None]), song

    def batch(
        self,
        size: int,
        remix_prob: float,
        mp3_prob: float = 0.0,
        level_db: tuple[float, float] = (0.0, 0.0),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augmented ``(stems [B, 4, C, N], mixtures [B, C, N])``."""
        crops, songs = zip(*(self.crop() for _ in range(size)), strict=True)
        raw = np.stack(crops)  # (B, 4, C, N)
        cfg = augment.AugmentConfig(level_db=level_db)
        remix: float | list[float] = remix_prob
        if self.set_remix is not None:
            remix = [self.set_remix[self.bank.sets[song]] for song in songs]
        return augment.augment_batch(raw, self.rng, cfg, remix_prob=remix, mp3_prob=mp3_prob)


def song_weights(
    lengths: np.ndarray, sets: Sequence[int], set_weights: Sequence[float] | None = None
) -> np.ndarray:
    """Probability of drawing each song ``[S]``: by length, or with ``set_weights`` the set's
    share split by length among its songs (a set without songs gives its share to none)."""
    length = np.asarray(lengths, dtype=np.float64)
    if set_weights is None:
        return length / length.sum()
    index = np.asarray(sets, dtype=np.int64)
    share = np.asarray(set_weights, dtype=np.float64)
    per_set = np.bincount(index, weights=length, minlength=len(share))
    weights = share[index] * length / per_set[index]
    return weights / weights.sum()


def check_sets(tcfg: TeacherTrainConfig, n_sets: int) -> None:
    """Refuse per-set weights or remix probabilities that do not fit ``n_sets`` data sets."""
    for name, values, low, high in (
        ("set_weights", tcfg.set_weights, 0.0, float("inf")),
        ("set_remix", tcfg.set_remix, 0.0, 1.0),
    ):
        if values is None:
            continue
        if len(values) != n_sets:
            raise StemtokError(f"{name}: {len(values)} values for {n_sets} data sets")
        if any(not low <= v <= high for v in values):
            raise StemtokError(f"{name}: values must be in [{low:g}, {high:g}]")
    if tcfg.set_weights is not None and sum(tcfg.set_weights) <= 0:
        raise StemtokError("set_weights: at least one set needs a positive weight")


def fixed_valid(bank: StemBank, n: int, per_song: int) -> np.ndarray:
    """The validation batch ``[songs x per_song, 4, C, N]``: ``per_song`` crops of ``n`` samples
    from every song of ``bank``, evenly spaced inside it (no augmentation, no randomness), so
    every validation song counts and the numbers move with the whole set, not with a few
    crops."""
    crops = []
    for song, length in enumerate(bank.lengths):
        for start in np.linspace(0, max(0, int(length) - n), per_song + 2)[1:-1]:
            crop = bank.crop(song, int(start), n)
            crops.append(crop if crop.ndim == 3 else crop[:, None])
    return np.stack(crops)


# --------------------------------------------------------------------------- model step
def separate_batch(model: BandSplitRoformer, mix: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mixtures ``[B, C, N]`` (``C`` the model's channels) -> (stem waveforms ``[B, 4, C, N]``,
    stem spectra ``[B, 4, C, F, T]``)."""
    cfg = model.cfg
    b, c, n = mix.shape
    spec = codec_dsp.stft(mix.reshape(b * c, n), cfg.n_fft, cfg.hop)
    spec = spec.view(b, c, *spec.shape[1:])
    est = apply_masks(model(spec_input(spec)).float(), spec)
    s, f, t = est.shape[1], est.shape[3], est.shape[4]
    wave = codec_dsp.istft(est.reshape(b * s * c, f, t), n, cfg.n_fft, cfg.hop)
    return wave.view(b, s, c, n), est


def compress(spec: torch.Tensor, power: float = 0.3) -> torch.Tensor:
    """Power-law compressed complex spectrum ``|X|^power * X / |X|`` (quiet bins count more)."""
    return spec * (spec.abs() + 1e-6).pow(power - 1.0)


def losses(
    model: BandSplitRoformer,
    stems: torch.Tensor,
    mix: torch.Tensor,
    compressed_weight: float = 0.0,
    kind: str = "l1",
    sdr_weight: float = 0.01,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts for true stems ``[B, 4, C, N]`` and mixtures ``[B, C, N]``.

    ``kind``: ``l1`` (L1 of waveforms, of complex spectra and of short-window magnitudes, plus
    ``compressed_weight`` x L1 of compressed spectra), ``sdr`` (minus the SDR of every stem,
    :func:`sdr_loss`) or ``l1+sdr`` (the first plus ``sdr_weight`` x the second).
    """
    if kind not in ("l1", "sdr", "l1+sdr"):
        raise StemtokError(f"unknown teacher loss {kind!r} (l1, sdr or l1+sdr)")
    cfg = model.cfg
    wave, est = separate_batch(model, mix)
    n = stems.shape[-1]
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=mix.device)
    if kind != "sdr":
        ref_spec = codec_dsp.stft(stems.reshape(-1, n), cfg.n_fft, cfg.hop).view(est.shape)
        parts["time_l1"] = (wave - stems).abs().mean()
        parts["spec_l1"] = torch.view_as_real(est - ref_spec).abs().mean()
        mr = []
        for n_fft, hop in MR_RESOLUTIONS:
            e = magnitude(codec_dsp.stft(wave.reshape(-1, n), n_fft, hop))
            r = magnitude(codec_dsp.stft(stems.reshape(-1, n), n_fft, hop))
            mr.append((e - r).abs().mean())
        parts["mr_l1"] = torch.stack(mr).mean()
        total = parts["time_l1"] + parts["spec_l1"] + parts["mr_l1"]
        if compressed_weight > 0:
            parts["comp_l1"] = torch.view_as_real(compress(est) - compress(ref_spec)).abs().mean()
            total = total + compressed_weight * parts["comp_l1"]
    if kind != "l1":
        parts["neg_sdr"] = sdr_loss(wave, stems)
        total = total + (1.0 if kind == "sdr" else sdr_weight) * parts["neg_sdr"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def sdr_loss(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Minus the mean SDR (dB) of stems ``[B, S, C, N]`` over both channels, with ``eps`` in
    both energies, so that a silent stem neither dominates the loss nor divides by zero (its
    estimate is pushed towards silence, its error energy counting against ``eps``)."""
    sig = ref.pow(2).sum(dim=(-2, -1))
    err = (est - ref).pow(2).sum(dim=(-2, -1))
    return -(10 * torch.log10((sig + eps) / (err + eps))).mean()


@torch.no_grad()
def evaluate(model: BandSplitRoformer, valid: np.ndarray) -> dict[str, Any]:
    """SI-SDR per stem (dB, mean over active items) of the model and of the mixture."""
    was = model.training
    model.eval()
    stems = torch.from_numpy(valid)
    mix = stems.sum(dim=1)
    wave = torch.cat([separate_batch(model, part)[0] for part in mix.split(4)])
    model.train(was)
    active = torch.from_numpy(np.array([[rms_db(x) > -50.0 for x in item] for item in valid]))
    out: dict[str, Any] = {"si_sdr": {}, "mixture_si_sdr": {}}
    for i, stem in enumerate(STEMS):
        keep = active[:, i]
        if not bool(keep.any()):
            continue
        k = int(keep.sum())
        ref = stems[keep, i].reshape(k, -1)  # the channels one after the other
        est = wave[keep, i].reshape(k, -1)
        out["si_sdr"][stem] = round(float(codec_dsp.si_sdr(ref, est, zero_mean=True).mean()), 2)
        out["mixture_si_sdr"][stem] = round(
            float(codec_dsp.si_sdr(ref, mix[keep].reshape(k, -1), zero_mean=True).mean()), 2
        )
    for key in ("si_sdr", "mixture_si_sdr"):
        if out[key]:
            out[key]["avg"] = round(float(np.mean(list(out[key].values()))), 2)
    return out


# --------------------------------------------------------------------------- trainer
class TeacherTrainer(common.Trainer):
    """Model, optimiser, data and counters of one run folder; ``data`` is one stem set or
    several (trained on as one; the first one's ``valid`` split is the validation set)."""

    def __init__(
        self,
        cfg: TeacherConfig,
        tcfg: TeacherTrainConfig,
        data: Sequence[Path],
        out: Path,
        device: torch.device,
        log: common.RunLog,
    ) -> None:
        super().__init__()
        self.cfg, self.tcfg, self.out, self.device = cfg, tcfg, out, device
        self.log_every, self.eval_every = tcfg.log_every, tcfg.eval_every
        self.checkpoint_minutes, self.refresh_minutes = (
            tcfg.checkpoint_minutes,
            tcfg.refresh_minutes,
        )
        common.seed_everything(tcfg.seed)
        self.np_rng = np.random.default_rng(tcfg.seed)
        self.model = BandSplitRoformer(cfg).to(device).train()
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay
        )
        check_sets(tcfg, len(data))
        split = "train" if all((d / "train").is_dir() for d in data) else None
        self.bank = StemBank(data, split, out / "cache", channels=cfg.channels)
        log.line(f"data: {len(self.bank.songs)} training songs, {self.bank.seconds / 60:.1f} min")
        self.crops: SongCrops | PrefetchCrops = SongCrops(
            self.bank, tcfg.segment, self.np_rng, tcfg.set_weights, tcfg.set_remix
        )
        if tcfg.workers > 0:
            self.crops = PrefetchCrops(
                self.bank,
                tcfg.segment,
                cfg.channels,
                tcfg.batch_size,
                tcfg.remix_prob,
                tcfg.workers,
                self.np_rng,
                out / "cache",
                tcfg.set_weights,
                tcfg.set_remix,
            )
        self.valid: np.ndarray | None = None
        if (data[0] / "valid").is_dir():
            vbank = StemBank(data[0], "valid", out / "cache", channels=cfg.channels)
            n = round(tcfg.valid_seconds * MODEL_RATE)
            self.valid = fixed_valid(vbank, n - n % cfg.hop, tcfg.valid_per_song)
            self.valid_key = f"{data[0]}:{len(vbank.songs)}x{tcfg.valid_per_song}x{n}"

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": common.rng_state(self.np_rng),
            "teacher_config": asdict(self.cfg),
            "train_config": asdict(self.tcfg),
        }

    def restore(self, path: Path) -> None:
        state = common.load_checkpoint(path, self.device)
        if TeacherConfig.from_dict(state["teacher_config"]) != self.cfg:
            raise StemtokError(f"{path}: the checkpoint is of another teacher config (use --fresh)")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        common.restore_rng(state["rng"], self.np_rng)
        self.restore_counters(state)

    def train_step(self, budget: common.Budget) -> dict[str, Any]:
        t0 = time.perf_counter()
        tc = self.tcfg
        lr = tc.lr * tc.lr_schedule.factor(self.step, budget.progress(self.step, self.elapsed))
        for group in self.opt.param_groups:
            group["lr"] = lr
        stems, mix = self.crops.batch(tc.batch_size, tc.remix_prob, tc.mp3_prob, tc.level_db)
        stems, mix = self.group.shard(stems), self.group.shard(mix)  # drawn alike everywhere
        with torch.autocast(self.device.type, torch.bfloat16, tc.precision == "bfloat16"):
            total, parts = self.forward(
                losses,
                self.model,
                torch.from_numpy(stems).to(self.device),
                torch.from_numpy(mix).to(self.device),
                tc.compressed_weight,
                tc.loss,
                tc.sdr_weight,
            )
        self.opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        grad = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.opt.step()
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        return {
            "step": self.step,
            "lr": lr,
            "loss": float(total.detach()),
            "grad_norm": float(grad),
            **parts,
        }

    def step_line(self, rec: dict[str, Any]) -> str:
        if "time_l1" not in rec:
            return f"step {rec['step']} loss {rec['loss']:.4f} lr {rec['lr']:.2e}"
        return (
            f"step {rec['step']} loss {rec['loss']:.4f} (time {rec['time_l1']:.4f}, "
            f"spec {rec['spec_l1']:.4f}, mr {rec['mr_l1']:.4f}) lr {rec['lr']:.2e}"
        )

    def validate(self) -> dict[str, Any] | None:
        if self.valid is None:
            return None
        ev = evaluate(self.model, self.valid)
        return ev | {"score": ev["si_sdr"].get("avg")}

    def valid_line(self, rec: dict[str, Any]) -> str:
        return f"valid step {self.step}: SI-SDR {rec['si_sdr']} (mixture {rec['mixture_si_sdr']})"

    def save_model(self, folder: Path) -> None:
        save_teacher(self.model, folder)

    def refresh_data(self) -> int:
        added = self.bank.refresh()
        if added:
            self.crops.reweight()
        return added


def train_teacher(
    cfg: TeacherConfig,
    tcfg: TeacherTrainConfig,
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    echo: TextIO | None = sys.stderr,
    init: dict[str, torch.Tensor] | None = None,
    session_minutes: float | None = None,
) -> dict[str, Any]:
    """Train (or resume) a teacher in ``out`` on the set(s) ``data``; returns the last record.

    ``init``: weights to start from when ``out`` has no checkpoint yet (a shipped teacher's).
    ``session_minutes``: stop this invocation after so many minutes of wall clock; the
    schedule and the counters carry on at the next one.
    """
    roots = [Path(data)] if isinstance(data, str | Path) else [Path(d) for d in data]
    out = Path(out)
    dev = common.select_device(device)
    log = common.RunLog(out, echo)
    try:
        trainer = TeacherTrainer(cfg, tcfg, roots, out, dev, log)
        ckpt = common.latest_checkpoint(out) if resume else None
        if ckpt is not None:
            trainer.restore(ckpt)
            log.line(
                f"resumed from {ckpt.name} (step {trainer.step}, "
                f"{trainer.cpu_s / 3600:.2f} CPU hours so far)"
            )
        elif init is not None:
            trainer.model.load_state_dict(init)
            log.line("started from the given weights")
        if trainer.group.writer:
            cfg.save(out)
        common.write_json(out / TRAIN_CONFIG_FILE, asdict(tcfg))
        n_params = sum(p.numel() for p in trainer.model.parameters()) / 1e6
        log.line(f"teacher '{cfg.name}' on {dev}, {n_params:.2f} M parameters")
        common.stop_on_sigterm()
        budget = common.Budget(tcfg.max_steps, tcfg.minutes, session_minutes, tcfg.cpu_minutes)
        return common.run(trainer, budget, log, progress)
    finally:
        log.close()


# --------------------------------------------------------------------------- whole songs
@torch.no_grad()
def separate_song(
    model: BandSplitRoformer,
    audio: np.ndarray,
    rate: int,
    chunk_s: float = 6.0,
    fade_s: float = 0.5,
) -> dict[str, np.ndarray]:
    """Separate ``[C, N]`` at ``rate`` (torch, for research and evaluation; the product runs the
    exported graph) -> ``{stem: [C, N]}`` at ``rate``. The channels go through the model in
    groups of its channel count
    (:func:`engine.runtime.teacher.channel_groups`)."""
    from engine.audio import resample
    from engine.chunks import process_in_chunks
    from engine.runtime.teacher import channel_groups, merge_groups

    model.eval()
    x = audio if rate == MODEL_RATE else resample(audio, rate, MODEL_RATE)
    hop, n_ch = model.cfg.hop, model.cfg.channels

    def one(piece: np.ndarray) -> np.ndarray:  # (C_m, n) -> (4 * C_m, n)
        n = piece.shape[-1]
        padded = np.pad(piece, ((0, 0), (0, (-n) % hop))).astype(np.float32)
        out: np.ndarray = separate_batch(model, torch.from_numpy(padded)[None])[0][0].numpy()
        return out[..., :n].reshape(-1, n)

    chunk, fade = round(chunk_s * MODEL_RATE), round(fade_s * MODEL_RATE)
    groups = channel_groups(x.shape[0], n_ch)
    results = [
        process_in_chunks(one, x[g], chunk, fade).reshape(len(STEMS), len(g), -1) for g in groups
    ]
    stems = merge_groups(groups, results, x.shape[0])
    if rate != MODEL_RATE:
        stems = np.stack([resample(s, MODEL_RATE, rate) for s in stems])
    n = audio.shape[-1]
    stems = np.pad(stems[..., :n], ((0, 0), (0, 0), (0, max(0, n - stems.shape[-1]))))
    return {stem: stems[i].astype(np.float32) for i, stem in enumerate(STEMS)}

"""Training recipe of the codec (``stemtok train codec``).

One step, on a batch of 4-s mono crops (one stem each, plus the mixture of the same crop):

1. both encoders and RVQs run on the stem (codebooks move by EMA, dead codes restart);
2. the generative decoder rebuilds the stem from both paths' quantised latents (the semantic
   latents detached): multi-resolution STFT + mel loss, and the commitment loss of both RVQs;
3. the semantic head predicts pitch classes, onsets, loudness and the stem's identity from the
   quantised semantic latents (this alone trains the semantic encoder);
4. the aligned decoder gets the codes corrupted (random substitutions, dropped levels; no
   gradient to the encoders) and the mixture's STFT, and masks the mixture towards the stem:
   spectral loss + negative SNR.

With a prior (``al_prior`` config, ``prior_teacher`` in the recipe) a step is only 4., the aligned
decoder also getting the teacher's estimate of the stem as a magnitude-ratio mask, and only the
aligned decoder trains (from the weights of ``init``).

Runs are resumable (the newest checkpoint of ``OUT`` is picked up), stop at ``max_steps`` or a
wall-clock budget, and end by writing ``OUT/codec.pt`` + ``OUT/codec_config.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from engine import dsp
from engine.errors import StemtokError
from engine.models import codec_dsp
from engine.models.codec import Codec, load_codec, save_codec
from engine.models.codec_config import TRAIN_CONFIG_FILE, CodecConfig, CodecTrainConfig
from engine.models.codec_losses import (
    corrupt_codes,
    reference_spectra,
    semantic_loss,
    semantic_targets,
    snr_loss,
    spectral_loss,
)
from engine.models.rvq import perplexity
from engine.runtime.teacher import TeacherModel
from engine.training import common
from engine.training.codec_data import Batch, CropSampler, GeneratedBank, StemBank, fixed_batch


def to_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(batch.stems).to(device),
        torch.from_numpy(batch.mixture).to(device),
        torch.from_numpy(batch.stem).to(device),
    )


def step_losses(
    codec: Codec, batch: Batch, tcfg: CodecTrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Total loss, its parts (detached) and the codes ``[B, 2, K, T]`` of one batch."""
    cfg = codec.cfg
    stems, mixture, stem = to_tensors(batch, next(codec.parameters()).device)
    n = stems.shape[-1]
    q = codec.quantize(stems)
    za, zs = q.acoustic.quantized, q.semantic.quantized
    rec = codec_dsp.istft(codec.decode_spectrum(za, zs.detach()), n, cfg.n_fft, cfg.stft_hop)
    ref = reference_spectra(stems)
    parts = {"spectral": spectral_loss(rec, ref)}
    parts["commit"] = q.acoustic.commit_loss + q.semantic.commit_loss
    sem = semantic_loss(codec.predict_semantic(zs), semantic_targets(stems, stem, cfg.frame_hop))
    parts.update({f"sem_{k}": v for k, v in sem.items()})
    codes, keep = corrupt_codes(
        q.codes.detach(), cfg.codebook_size, tcfg.max_substitution, tcfg.p_drop_levels, gen
    )
    mix_spec = codec.spectrum(mixture)
    mask = codec.mask(*codec.dequantize(codes, keep), mix_spec)
    est = codec_dsp.istft(mask * mix_spec, n, cfg.n_fft, cfg.stft_hop)
    parts["aligned"] = spectral_loss(est, ref)
    parts["aligned_snr"] = snr_loss(est, stems)
    total = (
        tcfg.w_spectral * parts["spectral"]
        + tcfg.w_commit * parts["commit"]
        + tcfg.w_semantic * sum(sem.values())
        + tcfg.w_aligned * (parts["aligned"] + tcfg.w_snr * parts["aligned_snr"])
    )
    return total, {k: v.detach() for k, v in parts.items()}, q.codes.detach()


def teacher_prior(teacher: TeacherModel, batch: Batch, n_fft: int, hop: int) -> np.ndarray:
    """The teacher's estimate of each example's stem as a magnitude-ratio mask on its mixture,
    ``[B, F, 8T]`` at the codec's STFT (what :class:`engine.runtime.lm_separator.LMSeparator`
    feeds the aligned decoder)."""
    est = teacher.separate_channels(batch.mixture[:, None])[
        np.arange(len(batch.stem)), batch.stem, 0
    ]
    return dsp.ratio_mask(dsp.stft(est, n_fft, hop), dsp.stft(batch.mixture, n_fft, hop))


def prior_step_losses(
    codec: Codec,
    batch: Batch,
    tcfg: CodecTrainConfig,
    gen: torch.Generator,
    prior: torch.Tensor,
    given: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """:func:`step_losses` of a run that trains the aligned decoder alone, on top of ``prior``
    ``[B, F, 8T]`` (the teacher's masks); ``given`` ``[G, 2, K, T]``: the codes of the last
    ``G`` examples (an LM's), used as they are instead of corrupted true ones."""
    cfg = codec.cfg
    stems, mixture, _ = to_tensors(batch, next(codec.parameters()).device)
    clean = codec.encode(stems)
    codes, keep = corrupt_codes(
        clean, cfg.codebook_size, tcfg.max_substitution, tcfg.p_drop_levels, gen
    )
    if given is not None:
        n = len(stems) - len(given)
        codes = torch.cat([codes[:n], given.to(codes)])
        keep = torch.cat([keep[:n], torch.full((len(given),), cfg.n_levels, device=keep.device)])
    mix_spec = codec.spectrum(mixture)
    mask = codec.mask(*codec.dequantize(codes, keep), mix_spec, prior)
    est = codec_dsp.istft(mask * mix_spec, stems.shape[-1], cfg.n_fft, cfg.stft_hop)
    parts = {
        "aligned": spectral_loss(est, reference_spectra(stems)),
        "aligned_snr": snr_loss(est, stems),
    }
    total = tcfg.w_aligned * (parts["aligned"] + tcfg.w_snr * parts["aligned_snr"])
    return total, {k: v.detach() for k, v in parts.items()}, clean


@torch.no_grad()
def evaluate(codec: Codec, batch: Batch, prior: torch.Tensor | None = None) -> dict[str, Any]:
    """Validation numbers on a fixed batch: generative log-mel L1, aligned SI-SDR (oracle codes),
    and the share of codes used per level (acoustic, semantic)."""
    was_training = codec.training
    codec.eval()
    stems, mixture, _ = to_tensors(batch, next(codec.parameters()).device)
    codes = codec.encode(stems)
    rec = codec.decode(codes)
    mel_l1 = (codec_dsp.log_mel(rec) - codec_dsp.log_mel(stems)).abs().mean()
    est = codec.decode_aligned(codes, mixture, prior)
    size = codec.cfg.codebook_size
    used = [
        [len(torch.unique(codes[:, p, k])) / size for k in range(codes.shape[2])] for p in (0, 1)
    ]
    out = {
        "mel_l1": float(mel_l1),
        "aligned_si_sdr": float(codec_dsp.si_sdr(stems, est).mean()),
        "mixture_si_sdr": float(codec_dsp.si_sdr(stems, mixture).mean()),
        "batch_code_use": used,
    }
    if prior is not None:  # the teacher alone (its masks on the mixture), and with no tokens
        spec = codec.spectrum(mixture)
        alone = codec_dsp.istft(prior * spec, stems.shape[-1], codec.cfg.n_fft, codec.cfg.stft_hop)
        out["prior_si_sdr"] = float(codec_dsp.si_sdr(stems, alone).mean())
        gen = torch.Generator().manual_seed(0)
        noise = torch.randint(0, size, codes.shape, generator=gen)
        est = codec.decode_aligned(noise, mixture, prior)
        out["random_codes_si_sdr"] = float(codec_dsp.si_sdr(stems, est).mean())
    codec.train(was_training)
    return out


def _usage_record(codec: Codec, codes: torch.Tensor) -> dict[str, Any]:
    size = codec.cfg.codebook_size
    return {
        "usage_acoustic": codec.rvq_acoustic.usage(),
        "usage_semantic": codec.rvq_semantic.usage(),
        "perplexity_acoustic": perplexity(codes[:, 0], size).tolist(),
        "perplexity_semantic": perplexity(codes[:, 1], size).tolist(),
    }


class CodecTrainer(common.Trainer):
    """Holds the model, optimiser, data and counters of one run folder."""

    def __init__(
        self,
        cfg: CodecConfig,
        tcfg: CodecTrainConfig,
        data: Path,
        out: Path,
        device: torch.device,
        log: common.RunLog,
    ):
        super().__init__()
        self.cfg, self.tcfg, self.out, self.device = cfg, tcfg, out, device
        self.log_every, self.eval_every = tcfg.log_every, tcfg.eval_every
        self.checkpoint_minutes = tcfg.checkpoint_minutes
        self.refresh_minutes = tcfg.refresh_minutes
        common.seed_everything(tcfg.seed)
        self.np_rng = np.random.default_rng(tcfg.seed)
        self.gen = torch.Generator().manual_seed(tcfg.seed)
        self.codec = Codec(cfg).to(device).train()
        if tcfg.init:
            _load_init(self.codec, Path(tcfg.init), log)
        self.teacher: TeacherModel | None = None
        if cfg.al_prior:
            if not tcfg.prior_teacher or not tcfg.init:
                raise StemtokError(
                    "a codec whose aligned decoder refines a prior is trained from a codec "
                    "(--init) and a teacher (--prior-teacher)"
                )
            self.teacher = TeacherModel(tcfg.prior_teacher, "cpu", torch.get_num_threads())
            for name, p in self.codec.named_parameters():
                p.requires_grad_(name.startswith("aligned."))
        self.opt = torch.optim.AdamW(
            [p for p in self.codec.parameters() if p.requires_grad],
            lr=tcfg.lr,
            betas=(tcfg.betas1, tcfg.betas2),
            weight_decay=tcfg.weight_decay,
        )
        bank = StemBank(data, _train_split(data), out / "cache")
        log.line(f"data: {len(bank.songs)} training songs, {bank.seconds / 60:.1f} min")
        self.bank = bank
        self.sampler = CropSampler(bank, tcfg.segment, self.np_rng)
        self.generated: GeneratedBank | None = None
        if self.teacher is not None and tcfg.generated_model:
            if self.group.world > 1:
                raise StemtokError("training on an LM's tokens runs in one process")
            log.line(f"tokens of {tcfg.generated_model} for {tcfg.generated_crops} crops")
            model, n = Path(tcfg.generated_model), tcfg.generated_crops
            self.generated = GeneratedBank(bank, model, n, tcfg.segment, out / "cache")
        self.valid = _valid_batch(data, out, tcfg.segment)
        self.valid_prior = None
        if self.teacher is not None and self.valid is not None:
            self.valid_prior = self.prior(self.valid)
        self.schedule = common.Schedule("cosine", tcfg.warmup, tcfg.final_lr_ratio)

    def state(self) -> dict[str, Any]:
        rng = common.rng_state(self.np_rng) | {"gen": self.gen.get_state()}
        return {
            "model": self.codec.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": rng,
            "codec_config": asdict(self.cfg),
            "train_config": asdict(self.tcfg),
        }

    def restore(self, path: Path) -> None:
        state = common.load_checkpoint(path, self.device)
        if CodecConfig.from_dict(state["codec_config"]) != self.cfg:
            raise StemtokError(
                f"{path} was trained with another codec config "
                f"('{state['codec_config'].get('name')}'); use another --out or the same config"
            )
        self.codec.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        common.restore_rng(state["rng"], self.np_rng)
        self.gen.set_state(state["rng"]["gen"])
        self.restore_counters(state)

    def train_step(self, budget: common.Budget) -> dict[str, Any]:
        t0 = time.perf_counter()
        progress = budget.progress(self.step, self.elapsed)
        lr = self.tcfg.lr * self.schedule.factor(self.step, progress)
        for group in self.opt.param_groups:
            group["lr"] = lr
        size = self.tcfg.batch_size
        taken = 0 if self.generated is None else round(size * self.tcfg.generated_share)
        batch = self.sampler.batch(size - taken)  # the same on every process
        given = None
        if self.generated is not None and taken:
            part, lm_codes = self.generated.batch(taken, self.np_rng)
            batch = Batch(
                np.concatenate([batch.stems, part.stems]),
                np.concatenate([batch.mixture, part.mixture]),
                np.concatenate([batch.stem, part.stem]),
            )
            given = torch.from_numpy(lm_codes)
        shard = self.group.shard
        batch = Batch(shard(batch.stems), shard(batch.mixture), shard(batch.stem))
        if self.teacher is None:
            total, parts, codes = self.forward(step_losses, self.codec, batch, self.tcfg, self.gen)
        else:
            prior = self.prior(batch)
            args = (self.codec, batch, self.tcfg, self.gen, prior, given)
            total, parts, codes = self.forward(prior_step_losses, *args)
        self.opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        grad = torch.nn.utils.clip_grad_norm_(self.codec.parameters(), self.tcfg.grad_clip)
        self.opt.step()
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        rec = {"step": self.step, "lr": lr, "loss": float(total.detach()), "grad_norm": float(grad)}
        rec |= {k: float(v) for k, v in parts.items()}
        if self.step % self.tcfg.log_every == 0:
            rec |= _usage_record(self.codec, codes)
        return rec

    def prior(self, batch: Batch) -> torch.Tensor:
        """The teacher's masks of ``batch`` (a run with a prior)."""
        assert self.teacher is not None
        cfg = self.cfg
        return torch.from_numpy(teacher_prior(self.teacher, batch, cfg.n_fft, cfg.stft_hop)).to(
            self.device
        )

    def step_line(self, rec: dict[str, Any]) -> str:
        return _summary_line(rec)

    def validate(self) -> dict[str, Any] | None:
        if self.valid is None:
            return None
        return evaluate(self.codec, self.valid, self.valid_prior)

    def save_model(self, folder: Path) -> None:
        save_codec(self.codec, folder)

    def refresh_data(self) -> int:
        """Pick up training songs rendered since the run started."""
        added = self.bank.refresh()
        if added:
            self.sampler.reweight()
        return added


def _load_init(codec: Codec, folder: Path, log: common.RunLog) -> None:
    """Start ``codec`` from the weights of the codec in ``folder``; a prior's projection and
    gate, which it may lack, keep their zero start."""
    source = load_codec(folder)
    missing, unexpected = codec.load_state_dict(source.state_dict(), strict=False)
    new = [k for k in missing if not k.startswith(("aligned.prior.", "aligned.gate"))]
    if new or unexpected:
        raise StemtokError(
            f"{folder}: its codec does not match this config ({(new + unexpected)[0]})"
        )
    log.line(f"weights from {folder}")


def _train_split(data: Path) -> str | None:
    return "train" if (data / "train").is_dir() else None


def _valid_batch(data: Path, out: Path, n: int) -> Batch | None:
    for split in ("valid", "validation"):
        if (data / split).is_dir():
            return fixed_batch(StemBank(data, split, out / "cache"), n, per_stem=2)
    return None


def _summary_line(rec: dict[str, Any]) -> str:
    aligned = f"aligned {rec['aligned']:.3f} snr {-rec['aligned_snr']:.1f} dB"
    if "spectral" not in rec:  # a run that trains the aligned decoder alone
        return f"step {rec['step']}  loss {rec['loss']:.3f}  {aligned}  lr {rec['lr']:.2e}"
    use_a = min(rec.get("usage_acoustic", [1.0]))
    use_s = min(rec.get("usage_semantic", [1.0]))
    sem = sum(v for k, v in rec.items() if k.startswith("sem_"))
    return (
        f"step {rec['step']}  loss {rec['loss']:.3f}  "
        f"spectral {rec['spectral']:.3f}  commit {rec['commit']:.3f}  semantic {sem:.3f}  "
        f"{aligned}  min level use a/s {use_a:.2f}/{use_s:.2f}  lr {rec['lr']:.2e}"
    )


def train_codec(
    cfg: CodecConfig,
    tcfg: CodecTrainConfig,
    data: str | Path,
    out: str | Path,
    *,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    echo: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Train (or resume) a codec in ``out`` on the set ``data``; returns the last record."""
    data, out = Path(data), Path(out)
    dev = common.select_device(device)
    log = common.RunLog(out, echo)
    trainer = CodecTrainer(cfg, tcfg, data, out, dev, log)
    ckpt = common.latest_checkpoint(out) if resume else None
    if ckpt is not None:
        trainer.restore(ckpt)
        log.line(f"resumed from {ckpt.name} (step {trainer.step})")
    if trainer.group.writer:
        cfg.save(out)
    common.write_json(out / TRAIN_CONFIG_FILE, asdict(tcfg))
    log.line(
        f"codec '{cfg.name}' ({cfg.semantic} semantic path) on {dev}, "
        f"{sum(p.numel() for p in trainer.codec.parameters()) / 1e6:.2f} M parameters"
    )
    budget = common.Budget(tcfg.max_steps, tcfg.minutes)
    common.stop_on_sigterm()
    try:
        rec = common.run(trainer, budget, log, progress)
    finally:
        log.close()
    return rec

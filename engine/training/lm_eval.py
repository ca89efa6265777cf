"""Evaluate a trained LM on held-out songs through the codec decoders.

For every 4-s window of the chosen songs (variant 0, no augmentation) of a token set:

- next-token accuracy per RVQ level, teacher-forced on the stored ("oracle") tokens, with the
  window's own mixture and with another song's mixture (what the mixture contributes);
- greedy generation, and how many generated tokens equal the oracle ones per level;
- audio of each stem from three token sources through the codec:
  ``oracle`` (the codec's ceiling), ``generated`` (the LM), and for the aligned decoder
  ``none`` (all-zero latents: the aligned decoder sees only the mixture, so every stem gets the
  same mask) and ``mixture`` (the mixture itself as every stem's estimate);
- per stem SI-SDR (aligned mode: sample-aligned by construction) and ViSQOL (both modes) against
  the set's reference stems, mono 48 kHz. Windows whose reference stem is silent are skipped.

``python -m engine.training.lm_eval --lm RUN/lm.pt --tokens TOKDIR`` prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.audio import read_audio, resample
from engine.constants import MODEL_RATE, STEMS
from engine.errors import StemtokError
from engine.models.generate import Sampling, generate
from engine.models.lm import SeparationLM, load_lm
from engine.training.lm import (
    MEL_PER_FRAME,
    Crops,
    allowed_classes,
    lm_loss,
    make_batch,
    read_meta,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvalSettings:
    """Which songs and windows, and which metrics."""

    split: str = "test"
    max_songs: int = 8
    windows: int = 3  # 4-s windows per song, spread evenly
    visqol: bool = True
    temperature: float = 0.0
    seed: int | None = None


def window_starts(frames: int, size: int, count: int) -> list[int]:
    """Up to ``count`` evenly spread starts of non-overlapping windows of ``size`` frames."""
    fit = frames // size
    if fit == 0:
        return []
    picks = np.linspace(0, fit - 1, min(count, fit)).round().astype(int)
    return [int(p) * size for p in sorted(set(picks.tolist()))]


def _songs(tokdir: Path, split: str, limit: int) -> list[Path]:
    files = sorted(p for p in (tokdir / split).glob("*.npz") if ".v" not in p.stem)
    return files[:limit]


def _mono48(path: Path) -> np.ndarray:
    audio, rate = read_audio(path)
    mono = audio.mean(axis=0, keepdims=True)
    if rate != MODEL_RATE:
        mono = resample(mono, rate, MODEL_RATE)
    return np.asarray(mono[0], dtype=np.float32)


def song_audio(set_dir: Path, split: str, song: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference stems ``[4, N]`` and mixture ``[N]``, mono 48 kHz."""
    folder = set_dir / split / song
    if not folder.is_dir():
        raise StemtokError(f"{folder}: reference stems not found (is the set still there?)")
    stems = np.stack([_mono48(folder / f"{s}.wav") for s in STEMS])
    return stems, _mono48(folder / "mixture.wav")


# --------------------------------------------------------------------------- decoding
def _decode(codec: Any, codes: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
    """Codes ``[W, 4, 2, K, T]`` + mixture ``[W, N]`` -> ``{"generative"|"aligned": [W, 4, N]}``."""
    c, m = torch.from_numpy(codes).long(), torch.from_numpy(mix)
    with torch.no_grad():
        gen = [codec.decode(c[:, s]) for s in range(len(STEMS))]
        al = [codec.decode_aligned(c[:, s], m) for s in range(len(STEMS))]
    return {"generative": torch.stack(gen, 1).numpy(), "aligned": torch.stack(al, 1).numpy()}


def _decode_without_tokens(codec: Any, mix: np.ndarray, frames: int) -> np.ndarray:
    """Aligned decoder on all-zero latents: ``[W, N]`` -> the same estimate for each stem."""
    from engine.models import codec_dsp

    m = torch.from_numpy(mix)
    cfg = codec.cfg
    z = torch.zeros(m.shape[0], cfg.latent_dim, frames)
    with torch.no_grad():
        spec = codec.spectrum(m)
        est = codec.mask(z, z, spec) * spec
        wave = codec_dsp.istft(est, m.shape[-1], cfg.n_fft, cfg.stft_hop).numpy()
    return np.repeat(wave[:, None], len(STEMS), axis=1)


# --------------------------------------------------------------------------- scoring
class Scores:
    """Lists of per-window scores keyed by (metric, source, mode, stem)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
        self.skipped: dict[str, int] = defaultdict(int)

    def add(self, source: str, mode: str, ref: np.ndarray, est: np.ndarray, vq: bool) -> None:
        """``ref``/``est`` ``[W, 4, N]``."""
        from engine.dsp import si_sdr
        from engine.evaluation.metrics import is_silent
        from engine.evaluation.perceptual import visqol

        for w in range(ref.shape[0]):
            for s, stem in enumerate(STEMS):
                if is_silent(ref[w, s]):
                    self.skipped[stem] += source == "oracle" and mode == "aligned"
                    continue
                if mode == "aligned":
                    self.values["si_sdr", source, mode, stem].append(si_sdr(ref[w, s], est[w, s]))
                if vq and source != "mixture":
                    self.values["visqol", source, mode, stem].append(visqol(ref[w, s], est[w, s]))

    def table(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (metric, source, mode, stem), vals in sorted(self.values.items()):
            row = out.setdefault(metric, {}).setdefault(f"{source}/{mode}", {})
            row[stem] = round(float(np.mean(vals)), 3)
        for rows in out.values():
            for row in rows.values():
                row["avg"] = round(float(np.mean([row[s] for s in STEMS if s in row])), 3)
        return out


def _token_stats(
    model: SeparationLM, codes: np.ndarray, mel: np.ndarray, chunk: int = 8
) -> dict[str, Any]:
    """Teacher-forced loss/accuracy per level on ``codes`` ``[W, 4, 2, K, T]`` (chunked)."""
    dev = model.heads.device
    weights = torch.tensor(model.cfg.loss_weights, device=dev)
    allowed = allowed_classes(model.cfg, dev)
    losses, accs, sizes = [], [], []
    for i in range(0, codes.shape[0], chunk):
        batch = make_batch(model.cfg, Crops(codes[i : i + chunk], mel[i : i + chunk]), dev)
        with torch.no_grad():
            logits = model.eval()(batch.mel, batch.inputs)
        parts = lm_loss(logits, batch.targets, allowed, weights, 0.0)
        losses.append(float(parts.loss))
        accs.append(parts.level_acc.cpu().numpy())
        sizes.append(batch.mel.shape[0])
    w = np.array(sizes) / sum(sizes)
    return {"loss": float(np.dot(w, losses)), "acc": (w[:, None] * np.stack(accs)).sum(0).tolist()}


# --------------------------------------------------------------------------- driver
def evaluate_lm(
    lm_path: str | Path,
    tokdir: str | Path,
    settings: EvalSettings = EvalSettings(),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score the LM at ``lm_path`` on the ``settings.split`` songs of ``tokdir``."""
    from engine.models.codec import load_codec

    tokdir = Path(tokdir)
    meta = read_meta(tokdir)
    model, codec = load_lm(lm_path), load_codec(str(meta["codec"]))
    set_dir, t = Path(str(meta["set"])), model.cfg.n_frames
    sampling = Sampling(temperature=settings.temperature, seed=settings.seed)
    scores, agree, ent, n_windows = Scores(), [], [], 0
    all_codes, all_mels = [], []
    for path in _songs(tokdir, settings.split, settings.max_songs):
        with np.load(path) as f:
            codes, mel = f["codes"].astype(np.int64), f["mel"].astype(np.float32)
        starts = window_starts(codes.shape[-1], t, settings.windows)
        if not starts:
            continue
        oracle = np.stack([codes[..., s : s + t] for s in starts])
        mels = np.stack([mel[:, MEL_PER_FRAME * s : MEL_PER_FRAME * (s + t)] for s in starts])
        all_codes.append(oracle)
        all_mels.append(mels)
        out = generate(model, mels, sampling=sampling)
        agree.append((out.codes == oracle).mean(axis=(0, 1, 2, 4)).tolist())
        ent.append(float(out.entropy.mean()))
        stems, mix = song_audio(set_dir, settings.split, path.stem)
        hop = codec.cfg.frame_hop
        ref = np.stack([stems[:, s * hop : (s + t) * hop] for s in starts])
        mixw = np.stack([mix[s * hop : (s + t) * hop] for s in starts])
        _score_song(codec, scores, ref, mixw, oracle, out.codes, settings.visqol)
        n_windows += len(starts)
        if progress is not None:
            progress(f"{path.stem}: {len(starts)} windows")
    if not n_windows:
        raise StemtokError(f"{tokdir}/{settings.split}: no song long enough to evaluate")
    codes_w, mels_w = np.concatenate(all_codes), np.concatenate(all_mels)
    other = np.roll(mels_w, len(all_codes[0]), axis=0)  # each window gets another song's mix
    return {
        "lm": str(lm_path),
        "lm_config": model.cfg.name,
        "tokens": str(tokdir),
        "settings": asdict(settings),
        "windows": n_windows,
        "teacher_forced_acc": _rounded(_token_stats(model, codes_w, mels_w)["acc"]),
        "teacher_forced_acc_other_mixture": _rounded(_token_stats(model, codes_w, other)["acc"]),
        "generated_equals_oracle": np.mean(agree, axis=0).round(4).tolist(),
        "mean_entropy_nats": round(float(np.mean(ent)), 3),
        "silent_windows_skipped": dict(scores.skipped),
        **scores.table(),
    }


def _rounded(values: list[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def _score_song(
    codec: Any,
    scores: Scores,
    ref: np.ndarray,
    mix: np.ndarray,
    oracle: np.ndarray,
    generated: np.ndarray,
    vq: bool,
) -> None:
    for source, codes in (("oracle", oracle), ("generated", generated)):
        for mode, est in _decode(codec, codes, mix).items():
            scores.add(source, mode, ref, est, vq)
    scores.add("none", "aligned", ref, _decode_without_tokens(codec, mix, oracle.shape[-1]), vq)
    scores.add("mixture", "aligned", ref, np.repeat(mix[:, None], len(STEMS), 1), vq)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m engine.training.lm_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--lm", type=Path, required=True, help="lm.pt of a training run")
    p.add_argument("--tokens", type=Path, required=True, help="token folder (TOKDIR)")
    p.add_argument("--split", default="test")
    p.add_argument("--songs", type=int, default=8, help="at most this many songs")
    p.add_argument("--windows", type=int, default=3, help="4-s windows per song")
    p.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (much faster)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = EvalSettings(args.split, args.songs, args.windows, not args.no_visqol)
    try:
        report = evaluate_lm(
            args.lm, args.tokens, settings, progress=lambda m: print(m, file=sys.stderr)
        )
    except StemtokError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

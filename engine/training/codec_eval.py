"""Measure a trained codec on a held-out split: ``python -m engine.training.codec_eval``.

``evaluate`` — per song of the split (never seen in training): each stem is encoded whole
(local attention and convolutions make whole-song codes equal to windowed ones away from window
edges), decoded by the generative decoder and, with the same (oracle) codes and the song's
mixture, by the aligned decoder. Scored on the ``excerpt`` seconds where the stem is loudest:

- generative: log-mel L1 (the model's 120-band features) and ViSQOL (audio mode, 48 kHz);
- aligned: SI-SDR and ViSQOL; the mixture itself as a "do nothing" SI-SDR baseline;
- codebook usage: share of the codes of every level used over the whole split, and perplexity;
- bitrate, and encode / decode speed (real-time factor) on 4-s windows.

``ablation`` — the semantic-path comparison: trains only the semantic path (encoder, RVQ, head)
of two codecs that differ only in ``semantic`` (learned vs crepe) for the same number of steps,
then scores what their *quantised* semantic tokens predict on the held-out split.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import dsp
from engine.constants import STEMS
from engine.models.codec import Codec, load_codec
from engine.models.codec_config import CodecConfig
from engine.models.codec_losses import semantic_loss, semantic_targets
from engine.models.rvq import perplexity
from engine.training import common
from engine.training.codec_data import CropSampler, StemBank


def _excerpt(ref: np.ndarray, seconds: float, rate: int = 48_000) -> slice:
    """The ``seconds`` window (on a 1-s grid) where ``ref`` ``[N]`` has the most energy."""
    n = min(ref.size, int(seconds * rate))
    whole = ref.size // rate
    if whole == 0:
        return slice(0, n)
    energy = (ref[: whole * rate].astype(np.float64) ** 2).reshape(whole, rate).sum(1)
    span = max(1, n // rate)
    sums = np.convolve(energy, np.ones(span), mode="valid")
    start = int(np.argmax(sums)) * rate
    return slice(start, start + n)


@torch.no_grad()
def reconstruct(codec: Codec, stems: np.ndarray) -> dict[str, np.ndarray]:
    """Codes ``[4, 2, K, T]``, generative and aligned estimates ``[4, N]`` of mono stems."""
    hop = codec.cfg.frame_hop
    n = stems.shape[1]
    x = torch.from_numpy(np.pad(stems, ((0, 0), (0, (-n) % hop))).astype(np.float32))
    codes = codec.encode(x)
    gen = codec.decode(codes)
    mix = x.sum(0, keepdim=True).expand_as(x).contiguous()
    aligned = codec.decode_aligned(codes, mix)
    return {
        "codes": codes.numpy(),
        "generative": gen[:, :n].numpy(),
        "aligned": aligned[:, :n].numpy(),
    }


def score_stem(
    ref: np.ndarray,
    gen: np.ndarray,
    al: np.ndarray,
    mix: np.ndarray,
    excerpt: float,
    use_visqol: bool,
) -> dict[str, float]:
    from engine.evaluation import metrics, perceptual

    sl = _excerpt(ref, excerpt)
    r, g, a, m = ref[sl], gen[sl], al[sl], mix[sl]
    out = {
        "gen_mel_l1": metrics.logmel_l1(r[None], g[None], 48_000),
        "aligned_si_sdr": dsp.si_sdr(r[None], a[None]),
        "mixture_si_sdr": dsp.si_sdr(r[None], m[None]),
        "aligned_mel_l1": metrics.logmel_l1(r[None], a[None], 48_000),
    }
    if use_visqol:
        out["gen_visqol"] = perceptual.visqol(r, g)
        out["aligned_visqol"] = perceptual.visqol(r, a)
    return out


def code_usage(all_codes: list[np.ndarray], size: int) -> dict[str, list[float]]:
    """Share of codes used and perplexity per level: codes ``[4, 2, K, T]`` per song."""
    cat = np.concatenate(
        [c.transpose(1, 2, 0, 3).reshape(2, c.shape[2], -1) for c in all_codes], -1
    )
    out: dict[str, list[float]] = {}
    for p, name in enumerate(("acoustic", "semantic")):
        out[f"used_{name}"] = [len(np.unique(cat[p, k])) / size for k in range(cat.shape[1])]
        t = torch.from_numpy(cat[p][None].astype(np.int64))
        out[f"perplexity_{name}"] = perplexity(t, size).tolist()
    return out


def speed(codec: Codec, threads: int, windows: int = 4, repeats: int = 3) -> dict[str, float]:
    """Seconds of audio per second of compute (real-time factor) on ``windows`` x 4-s windows."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = 0.1 * torch.randn(windows, 192_000)
    best: dict[str, float] = {}
    with torch.no_grad():
        codes = codec.encode(x)
        fns: dict[str, Callable[[], torch.Tensor]] = {
            "encode": lambda: codec.encode(x),
            "decode": lambda: codec.decode(codes),
            "decode_aligned": lambda: codec.decode_aligned(codes, x),
        }
        for name, fn in fns.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            best[f"{name}_x_realtime"] = windows * 4.0 / min(times)
    torch.set_num_threads(old)
    return best


def evaluate(
    codec: Codec,
    data: Path,
    split: str,
    cache: Path,
    excerpt: float = 10.0,
    use_visqol: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """All numbers of the codec report for one split (see the module docstring)."""
    bank = StemBank(data, split, cache)
    rows, codes = [], []
    for name, song in zip(bank.names, bank.songs, strict=True):
        stems = np.asarray(song, dtype=np.float32)
        rec = reconstruct(codec, stems)
        codes.append(rec["codes"])
        mix = stems.sum(0)
        for i, stem in enumerate(STEMS):
            if 10 * math.log10(float(np.mean(stems[i] ** 2)) + 1e-20) < -60:
                continue  # silent reference: not scored
            s = score_stem(
                stems[i], rec["generative"][i], rec["aligned"][i], mix, excerpt, use_visqol
            )
            rows.append({"song": name, "stem": stem} | s)
            log(f"{name} {stem}: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
    per_stem = {
        stem: {
            k: float(np.mean([r[k] for r in rows if r["stem"] == stem]))
            for k in rows[0]
            if k not in ("song", "stem")
        }
        for stem in STEMS
        if any(r["stem"] == stem for r in rows)
    }
    return {
        "split": split,
        "songs": len(bank.names),
        "minutes": bank.seconds / 60,
        "per_stem": per_stem,
        "rows": rows,
        "usage": code_usage(codes, codec.cfg.codebook_size),
        "bitrate_bps": codec.cfg.bitrate,
    }


# ---------------------------------------------------------------- semantic-path ablation


def train_semantic_only(
    cfg: CodecConfig,
    data: Path,
    cache: Path,
    steps: int,
    batch: int = 8,
    seed: int = 0,
    log: Any = print,
) -> tuple[Codec, float]:
    """Train only the semantic path of a fresh codec; returns it and the seconds per step."""
    common.seed_everything(seed)
    codec = Codec(cfg).train()
    params = [
        p for m in (codec.semantic, codec.semantic_head) for p in m.parameters() if p.requires_grad
    ]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.8, 0.99), weight_decay=0.01)
    sampler = CropSampler(StemBank(data, "train", cache), 192_000, np.random.default_rng(seed))
    t0 = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 * common.lr_factor(step, step / steps, 50, 0.05)
        b = sampler.batch(batch)
        x, stem = torch.from_numpy(b.stems), torch.from_numpy(b.stem)
        zs = codec.latents_semantic(x)
        q = codec.rvq_semantic(zs)
        losses = semantic_loss(
            codec.predict_semantic(q.quantized), semantic_targets(x, stem, cfg.frame_hop)
        )
        loss = torch.stack(list(losses.values())).sum() + 0.5 * q.commit_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            log(
                f"{cfg.semantic} step {step + 1}: "
                + ", ".join(f"{k} {float(v):.3f}" for k, v in losses.items())
            )
    return codec.eval(), (time.perf_counter() - t0) / steps


@torch.no_grad()
def semantic_probe(
    codec: Codec, data: Path, split: str, cache: Path, crops: int = 64, seed: int = 99
) -> dict[str, float]:
    """What the quantised semantic tokens predict on ``split`` (via the trained head):
    stem accuracy, pitch-class accuracy on active frames, onset correlation, loudness MAE,
    and the share of semantic codes used."""
    sampler = CropSampler(
        StemBank(data, split, cache), 192_000, np.random.default_rng(seed), keep_silent=0.0
    )
    b = sampler.batch(crops)
    x, stem = torch.from_numpy(b.stems), torch.from_numpy(b.stem)
    zs = codec.latents_semantic(x)
    codes = codec.rvq_semantic.encode(zs)
    pred = codec.predict_semantic(codec.rvq_semantic.decode(codes))
    tg = semantic_targets(x, stem, codec.cfg.frame_hop)
    active = tg[:, 13] > 30 / 80
    pitched = active & (stem != 1)[:, None]  # drums have no pitch class
    pc_ok = (pred[:, :12].argmax(1) == tg[:, :12].argmax(1))[pitched]
    on_p, on_t = torch.sigmoid(pred[:, 12]).flatten(), tg[:, 12].flatten()
    return {
        "stem_accuracy": float((pred[:, 14:].mean(2).argmax(1) == stem).float().mean()),
        "pitch_class_accuracy": float(pc_ok.float().mean()),
        "onset_correlation": float(torch.corrcoef(torch.stack([on_p, on_t]))[0, 1]),
        "loudness_mae_db": float((torch.sigmoid(pred[:, 13]) - tg[:, 13]).abs().mean() * 80),
        "codes_used": float(
            np.mean(
                [
                    len(torch.unique(codes[:, k])) / codec.cfg.codebook_size
                    for k in range(codes.shape[1])
                ]
            )
        ),
    }


def ablation(
    cfg: CodecConfig, data: Path, cache: Path, steps: int, log: Any = print
) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": steps, "batch": 8}
    for kind in ("learned", "crepe"):
        codec, sec = train_semantic_only(replace(cfg, semantic=kind), data, cache, steps, log=log)
        probe = semantic_probe(codec, data, "test", cache)
        x = 0.1 * torch.randn(4, 192_000)
        t0 = time.perf_counter()
        with torch.no_grad():
            codec.latents_semantic(x)
        probe["encode_x_realtime_1thread"] = 16.0 / (time.perf_counter() - t0)
        probe["train_seconds_per_step"] = sec
        probe["trainable_parameters"] = sum(
            p.numel() for p in codec.semantic.parameters() if p.requires_grad
        )
        out[kind] = probe
        log(f"{kind}: {json.dumps(probe)}")
    return out


def _fmt(v: float) -> str:
    return f"{v:.2f}"


def markdown(res: dict[str, Any], ablation_res: dict[str, Any] | None = None) -> str:
    """Markdown tables of an ``evaluate`` result (and optionally an ``ablation`` result)."""
    cols = ["gen_mel_l1", "gen_visqol", "aligned_si_sdr", "mixture_si_sdr", "aligned_visqol"]
    cols = [c for c in cols if c in next(iter(res["per_stem"].values()))]
    lines = ["| stem | n | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for stem, row in res["per_stem"].items():
        n = sum(1 for r in res["rows"] if r["stem"] == stem)
        lines.append(f"| {stem} | {n} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    mean = {c: float(np.mean([r[c] for r in res["rows"]])) for c in cols}
    lines.append(f"| all | {len(res['rows'])} | " + " | ".join(_fmt(mean[c]) for c in cols) + " |")
    use = res["usage"]
    k = len(use["used_acoustic"])
    lines += [
        "",
        "| level | " + " | ".join(str(i) for i in range(k)) + " |",
        "|---" * (k + 1) + "|",
    ]
    for key in ("used_acoustic", "used_semantic", "perplexity_acoustic", "perplexity_semantic"):
        fmt = "{:.0%}" if key.startswith("used") else "{:.0f}"
        lines.append(f"| {key} | " + " | ".join(fmt.format(v) for v in use[key]) + " |")
    if ablation_res is not None:
        keys = [key for key in ablation_res["learned"] if key in ablation_res["crepe"]]
        lines += [
            "",
            "| semantic path | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        for kind in ("learned", "crepe"):
            vals = [ablation_res[kind][key] for key in keys]
            lines.append(f"| {kind} | " + " | ".join(f"{v:.3g}" for v in vals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.training.codec_eval")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluate", help="score a trained codec on a held-out split")
    e.add_argument("--codec", type=Path, required=True)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--out", type=Path, required=True, help="JSON file with every number")
    e.add_argument("--no-visqol", action="store_true")
    a = sub.add_parser("ablation", help="semantic path: learned vs frozen CREPE-tiny")
    a.add_argument("--data", type=Path, required=True)
    a.add_argument("--steps", type=int, default=300)
    a.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="Markdown tables of saved results")
    r.add_argument("--eval", type=Path, required=True)
    r.add_argument("--ablation", type=Path)
    for sp in (e, a):
        sp.add_argument("--cache", type=Path, help="stem cache folder (e.g. the run's cache)")
    args = p.parse_args(argv)
    if args.cmd == "report":
        abl = json.loads(args.ablation.read_text()) if args.ablation else None
        print(markdown(json.loads(args.eval.read_text()), abl))
        return 0
    torch.set_num_threads(1)
    cache = args.cache or args.out.parent / "cache"
    if args.cmd == "evaluate":
        codec = load_codec(args.codec)
        res = evaluate(codec, args.data, args.split, cache, use_visqol=not args.no_visqol)
        res["semantic_probe"] = semantic_probe(codec, args.data, args.split, cache)
        res["speed_1_thread"] = speed(codec, 1)
        res["speed_2_threads"] = speed(codec, 2)
        res["parameters"] = sum(p.numel() for p in codec.parameters())
    else:
        res = ablation(CodecConfig.named("small"), args.data, cache, args.steps)
    common.write_json(args.out, res)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1), file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The aligned decoder before and after it learned to refine the teacher, by token source.

On evenly spread 4-s windows of held-out songs (mono 48 kHz, as the codec sees them), SI-SDR per
stem of:

- ``mixture``: the mixture as every stem (the floor);
- ``oracle ratio mask``: the evaluation harness's oracle (power-ratio masks of the true stems,
  :class:`engine.evaluation.baselines.OracleMask`) on the same windows: what "close to the
  oracle" is measured against;
- ``codec spectra``: the generative decoder's magnitudes of the oracle codes of all four stems,
  as power-ratio masks on the mixture: how much of the stems the codes alone describe;
- ``teacher``: the teacher's stems of the window, as magnitude-ratio masks on the mixture (what
  the refining decoder starts from);
- for the plain aligned decoder (``--codec``, the one the LM's folder shipped with) and the
  refining one (``--refined``), three token sources: ``oracle`` (the codec's codes of the true
  stem: the ceiling), ``generated`` (the model folder's LM, greedy, onnxruntime: what a user
  gets), ``none`` (uniformly random codes: what the mixture and the prior alone give).

    .venv/bin/python scripts/refine_eval.py data/synth-full --model resources/models/default \\
        --codec resources/models/codec-small --refined runs/prior --teacher teacher \\
        --json docs/lm-report/refine.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import dsp
from engine.constants import STEMS
from engine.evaluation.baselines import OracleMask
from engine.evaluation.metrics import is_silent
from engine.models.codec import Codec, load_codec
from engine.runtime.decode import generate
from engine.runtime.model import Model, model_dir
from engine.runtime.teacher import TeacherModel
from engine.training.lm_eval import song_audio, window_starts

SOURCES = ("oracle", "generated", "none")


def _decode(codec: Codec, codes: np.ndarray, mix: np.ndarray, prior: np.ndarray | None) -> Any:
    """One stem's codes ``[W, 2, K, T]``, mixtures ``[W, N]`` (and prior masks) -> ``[W, N]``."""
    with torch.no_grad():
        p = None if prior is None else torch.from_numpy(prior)
        out = codec.decode_aligned(torch.from_numpy(codes).long(), torch.from_numpy(mix), p)
    return out.numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a set in the MUSDB layout")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="default", help="model folder whose LM writes the tokens")
    ap.add_argument("--codec", type=Path, required=True, help="the plain codec")
    ap.add_argument("--refined", type=Path, required=True, help="the refining codec's run")
    ap.add_argument("--teacher", default="teacher", help="the teacher it refines")
    ap.add_argument("--windows", type=int, default=3, help="windows per song")
    ap.add_argument("--json", type=Path, help="write the table here too")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = Model(model_dir(args.model), "cpu")
    teacher = TeacherModel(model_dir(args.teacher), "cpu")
    plain, refined = load_codec(args.codec), load_codec(args.refined)
    cfg = plain.cfg
    window = model.sizes.window
    scores: dict[str, dict[str, list[float]]] = {}

    def add(name: str, stem: str, ref: np.ndarray, est: np.ndarray) -> None:
        if not is_silent(ref):  # a silent reference stem has no SI-SDR (as in lm_eval)
            scores.setdefault(name, {}).setdefault(stem, []).append(dsp.si_sdr(ref, est))

    songs = sorted(p.name for p in (args.data / args.split).iterdir() if p.is_dir())
    for song in songs:
        stems, mix = song_audio(args.data, args.split, song)
        hop = cfg.frame_hop
        starts = [s * hop for s in window_starts(mix.shape[-1] // hop, window // hop, args.windows)]
        mixes = np.stack([mix[s : s + window] for s in starts])  # (W, N)
        refs = np.stack([stems[:, s : s + window] for s in starts], axis=1)  # (4, W, N)
        generated = generate(model, dsp.log_mel(mixes)).codes  # (W, 4, 2, K, T)
        est_t = teacher.separate_channels(mixes[:, None])[:, :, 0]  # (W, 4, N)
        mix_spec = dsp.stft(mixes, cfg.n_fft, cfg.stft_hop)
        rng = np.random.default_rng(0)
        for w in range(len(starts)):
            truth = {stem: refs[i, w, None] for i, stem in enumerate(STEMS)}
            ideal = OracleMask()(mixes[w][None], cfg.sample_rate, truth)
            for i, stem in enumerate(STEMS):
                add("oracle ratio mask", stem, refs[i, w], ideal[stem][0])
        power = []  # the generative decoder's |S|^2 of each stem's oracle codes, (W, F, 8T)
        for i, stem in enumerate(STEMS):
            ref = refs[i]
            prior = dsp.ratio_mask(dsp.stft(est_t[:, i], cfg.n_fft, cfg.stft_hop), mix_spec)
            with torch.no_grad():
                oracle = plain.encode(torch.from_numpy(ref)).numpy()
                spec = plain.decode_spectrum(*plain.dequantize(torch.from_numpy(oracle)))
            power.append(spec.abs().numpy() ** 2)
            codes = {
                "oracle": oracle,
                "generated": generated[:, i],
                "none": rng.integers(0, cfg.codebook_size, oracle.shape),
            }
            for w in range(len(starts)):
                add("mixture", stem, ref[w], mixes[w])
                add(
                    "teacher",
                    stem,
                    ref[w],
                    dsp.istft(prior[w] * mix_spec[w], window, cfg.n_fft, cfg.stft_hop),
                )
            for source in SOURCES:
                a = _decode(plain, codes[source], mixes, None)
                b = _decode(refined, codes[source], mixes, prior)
                for w in range(len(starts)):
                    add(f"plain {source}", stem, ref[w], a[w])
                    add(f"refined {source}", stem, ref[w], b[w])
        ratio = np.stack(power) / (np.sum(power, axis=0) + 1e-12)  # (4, W, F, 8T)
        for i, stem in enumerate(STEMS):
            for w in range(len(starts)):
                est = dsp.istft(ratio[i, w] * mix_spec[w], window, cfg.n_fft, cfg.stft_hop)
                add("codec spectra", stem, refs[i, w], est)
        print(f"{song}: {len(starts)} windows", file=sys.stderr, flush=True)
    table = {
        name: {stem: round(float(np.mean(v)), 2) for stem, v in per.items()}
        | {"avg": round(float(np.mean([np.mean(v) for v in per.values()])), 2)}
        for name, per in scores.items()
    }
    text = json.dumps(table, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

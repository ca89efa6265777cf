"""``stemtok export`` as a function: LM checkpoint + codec folder -> a checked model folder.

The folder is written beside its final place and renamed into it only after the parity check
passed, so a failed export never leaves a half model where the runtime looks.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import dsp
from engine.constants import MODEL_RATE
from engine.errors import StemtokError
from engine.models.codec import Codec, load_codec
from engine.models.lm import SeparationLM, load_lm
from export import parity
from export.onnx_export import (
    export_aligned,
    export_all,
    move_into_place,
    sha256,
    write_config,
)
from export.optimize import optimize_lm

Echo = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_pair(lm: SeparationLM, codec: Codec) -> None:
    cfg, ccfg = lm.cfg, codec.cfg
    if (cfg.n_levels, cfg.codebook_size) != (ccfg.n_levels, ccfg.codebook_size):
        raise StemtokError(
            f"the LM writes {cfg.n_levels} x {cfg.codebook_size} codes but the codec has "
            f"{ccfg.n_levels} x {ccfg.codebook_size}: they were not trained together"
        )
    if cfg.decoding != "sequential":
        raise StemtokError("only sequential-decoding LMs export (the A3 ablation does not)")


def _mono_48k(path: Path | None) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    from engine.audio import read_audio, resample

    audio, rate = read_audio(path)
    return resample(audio.mean(axis=0, keepdims=True), rate, MODEL_RATE)[0]


def export_model(
    lm_path: Path,
    codec_dir: Path,
    out: Path,
    *,
    overwrite: bool = False,
    kv: str = "inplace",
    parity_audio: Path | None = None,
    echo: Echo = _stderr,
) -> dict[str, Any]:
    """Export, check parity, and move the folder to ``out``; returns ``model_config.json``."""
    if out.exists() and not overwrite:
        raise StemtokError(f"{out}: already exists (pass --overwrite to replace it)")
    if kv not in ("inplace", "growing"):
        raise StemtokError(f"unknown KV mode {kv!r} (inplace or growing)")
    lm, codec = load_lm(lm_path), load_codec(codec_dir)
    _check_pair(lm, codec)
    tmp = out.parent / f".{out.name}.export"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        ref = parity.reference(lm, codec, parity.test_windows(lm, _mono_48k(parity_audio)))
        echo(f"torch reference in {time.perf_counter() - t0:.1f} s")
        config = export_all(lm, codec, tmp, static=kv == "inplace")
        config["name"] = out.name  # not the temporary folder's name
        write_config(tmp, config)
        echo(f"exported 4 graphs in {time.perf_counter() - t0:.1f} s; optimizing the LM")
        config = optimize_graphs(tmp, ref.mel, echo)
        echo("checking parity with torch")
        figures = parity.check(ref, tmp)
        echo(
            "parity: "
            + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
            )
        )
        parity.verify(figures)
        config["parity"] = {**config.get("parity", {}), **figures}
        config["source"] = {
            "lm": str(lm_path),
            "codec": str(codec_dir),
            "lm_sha256": sha256(lm_path),
        }
        write_config(tmp, config)
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum((out / name).stat().st_size for name in config["files"])
    echo(f"{out}: {size / 1e6:.1f} MB")
    return config


#: the fused float32 LM must decode exactly as the graph it came from; the float16 one must
#: pick the same class at nearly every teacher-forced step
FUSED_LOGIT_TOL = 1e-3
FP16_MIN_AGREEMENT = 0.9


def optimize_graphs(folder: Path, mel: np.ndarray, echo: Echo = _stderr) -> dict[str, Any]:
    """Fuse ``folder/lm.onnx`` in place and write ``lm_fp16.onnx`` beside it, each checked
    against the plain float32 graph on windows ``mel``; returns the updated config (written)."""
    from engine.runtime.model import FP16_LM, read_config

    config = read_config(folder, verify=False)
    plain = folder / ".lm-plain.onnx"
    (folder / "lm.onnx").replace(plain)
    try:
        done = optimize_lm(plain, folder / "lm.onnx")
        optimize_lm(plain, folder / FP16_LM, fp16=True)
        config["files"]["lm.onnx"] = sha256(folder / "lm.onnx")
        config["files"][FP16_LM] = sha256(folder / FP16_LM)
        write_config(folder, config)
        figures = _optimized_parity(folder, plain, mel)
    finally:
        plain.unlink(missing_ok=True)
    echo("optimized LM: " + ", ".join(f"{k} {v:.4g}" for k, v in {**done, **figures}.items()))
    if figures["fused_logits_max_abs"] > FUSED_LOGIT_TOL or figures["fused_token_mismatch"]:
        raise StemtokError(f"the fused LM graph differs from the plain one ({figures})")
    if figures["fp16_step_argmax_agreement"] < FP16_MIN_AGREEMENT:
        raise StemtokError(f"the float16 LM graph disagrees with float32 too often ({figures})")
    config["graphs"] = {
        "lm.onnx": {"dtype": "float32", "fused": done},
        FP16_LM: {"dtype": "float16", "fused": done, "for": "cuda"},
    }
    config["parity"] = {**config.get("parity", {}), **figures}
    write_config(folder, config)
    return config


def _optimized_parity(folder: Path, plain: Path, mel: np.ndarray) -> dict[str, float]:
    """Figures of the fused and float16 graphs of ``folder`` against the plain graph."""
    from engine.runtime.decode import Decoder, generate
    from engine.runtime.model import Model

    fused = Model(folder, "cpu", verify=False)
    half = Model(folder, "cpu", verify=False, precision="fp16")
    ref = Model(folder, "cpu", verify=False)
    ref.use_lm(plain)  # the graph as exported, before the passes
    pre, cond = ref.encode(mel)
    a = Decoder(ref, mel.shape[0]).prefill(pre, cond)
    b = Decoder(fused, mel.shape[0]).prefill(pre, cond)
    out = {
        "fused_logits_max_abs": float(np.abs(a - b).max()),
        "fused_token_mismatch": float(
            np.mean(generate(ref, mel).codes != generate(fused, mel).codes)
        ),
    }
    out.update(parity.precision_parity(ref, half, mel))
    return out


def optimize_model(
    src: Path,
    out: Path,
    *,
    overwrite: bool = False,
    parity_audio: Path | None = None,
    echo: Echo = _stderr,
) -> dict[str, Any]:
    """Fuse the LM of the model folder ``src`` and add its float16 graph, checked against the
    folder's own float32 graph (which was checked against torch when it was exported); the
    result goes to ``out`` (``src`` itself with ``overwrite``) by a rename."""
    from engine.runtime.model import read_config

    if out.exists() and not overwrite:
        raise StemtokError(f"{out}: already exists (pass --overwrite to replace it)")
    config = read_config(src)  # checksums verified: we start from what was exported
    if "graphs" in config:
        raise StemtokError(f"{src}: the LM is already optimized ({config['graphs']})")
    window = int(config["rates"]["window_samples"])
    audio = _mono_48k(parity_audio)
    if audio is None or audio.shape[-1] < window:
        audio = 0.1 * np.random.default_rng(0).standard_normal(3 * window).astype(np.float32)
    starts = np.linspace(0, audio.shape[-1] - window, 3).astype(int)
    mel = dsp.log_mel(np.stack([audio[s : s + window] for s in starts]))
    tmp = out.parent / f".{out.name}.optimize"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        config = optimize_graphs(tmp, mel, echo)
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return config


def _same_tokenizer(a: Codec, b: Codec) -> bool:
    """Whether two codecs write the same codes: equal encoders and codebooks."""
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(("acoustic.", "semantic.", "rvq_"))]
    return all(k in sb and torch.equal(sa[k], sb[k]) for k in keys)


def _teacher_ref(folder: Path) -> str:
    """How a model config names a teacher folder: its bare name when that name finds it (a
    shipped teacher), else its absolute path."""
    from engine.runtime.model import model_dir

    try:
        if model_dir(folder.name).resolve() == folder.resolve():
            return folder.name
    except StemtokError:
        pass
    return str(folder.resolve())


def refine_model(
    src: Path,
    codec_dir: Path,
    out: Path,
    *,
    teacher: Path | None = None,
    overwrite: bool = False,
    parity_audio: Path | None = None,
    echo: Echo = _stderr,
) -> dict[str, Any]:
    """Give the model folder ``src`` the aligned decoder of ``codec_dir``, one that refines a
    teacher's estimates (trained with ``stemtok train codec --prior-teacher``), checked against
    torch on windows where that teacher really ran; the result goes to ``out`` (``src`` itself
    with ``overwrite``) by a rename. ``teacher`` defaults to the one the decoder trained with."""
    from engine.models.codec_config import TRAIN_CONFIG_FILE
    from engine.runtime.model import Model, model_dir, read_config
    from engine.runtime.teacher import GRAPH_FILE, TeacherModel

    if out.exists() and not overwrite:
        raise StemtokError(f"{out}: already exists (pass --overwrite to replace it)")
    config = read_config(src)
    codec = load_codec(codec_dir)
    if not codec.cfg.al_prior:
        raise StemtokError(
            f"{codec_dir}: its aligned decoder refines no teacher (train one with 'stemtok train "
            "codec --init CODEC --prior-teacher TEACHER')"
        )
    if teacher is None:
        import json

        recipe = codec_dir / TRAIN_CONFIG_FILE
        named = json.loads(recipe.read_text()).get("prior_teacher") if recipe.is_file() else None
        if not named:
            raise StemtokError(f"{codec_dir}: no record of its teacher; pass --prior-teacher")
        teacher = Path(named)
    teacher = model_dir(teacher)
    base = Path(config.get("source", {}).get("codec", ""))
    if (base / "codec.pt").is_file() and not _same_tokenizer(codec, load_codec(base)):
        raise StemtokError(
            f"{codec_dir}: its encoders differ from those of {base}, whose tokens the LM of "
            f"{src} writes"
        )
    n_frames = int(config["layout"]["n_frames"])
    window = n_frames * codec.cfg.frame_hop
    audio = _mono_48k(parity_audio)
    if audio is None or audio.shape[-1] < window:
        audio = 0.1 * np.random.default_rng(0).standard_normal(3 * window).astype(np.float32)
    starts = np.linspace(0, audio.shape[-1] - window, 3).astype(int)
    windows = np.stack([audio[s : s + window] for s in starts]).astype(np.float32)
    stems = TeacherModel(teacher, "cpu").separate_channels(windows[:, None])[:, 0, 0]  # vocals
    mix_spec = dsp.stft(windows, codec.cfg.n_fft, codec.cfg.stft_hop)
    prior = dsp.ratio_mask(dsp.stft(stems, codec.cfg.n_fft, codec.cfg.stft_hop), mix_spec)
    with torch.no_grad():
        codes = codec.encode(torch.from_numpy(stems))
        spec = codec.spectrum(torch.from_numpy(windows))
        ref = codec.mask(*codec.dequantize(codes), spec, torch.from_numpy(prior)).numpy()
    tmp = out.parent / f".{out.name}.refine"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        export_aligned(codec.eval(), tmp / "codec_aligned.onnx", n_frames)
        config["files"]["codec_aligned.onnx"] = sha256(tmp / "codec_aligned.onnx")
        config["prior"] = {
            "teacher": _teacher_ref(teacher),
            "sha256": sha256(teacher / GRAPH_FILE),
        }
        config["name"] = out.name
        config.setdefault("source", {})["aligned"] = str(codec_dir)
        write_config(tmp, config)
        model = Model(tmp, "cpu", verify=False)
        feeds = {
            "codes": codes.numpy(),
            "mix_logmag": dsp.log_magnitude(mix_spec),
            "prior": prior,
        }
        (mask,) = model.aligned.run(None, feeds)
        err = float(np.abs(mask - ref).max())
        echo(f"aligned decoder parity: mask max abs {err:.3g}")
        if err > parity.MASK_TOL:
            raise StemtokError(
                f"parity check failed: the aligned decoder differs from torch ({err})"
            )
        config["parity"] = {**config.get("parity", {}), "aligned_mask_max_abs": err}
        write_config(tmp, config)
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return config

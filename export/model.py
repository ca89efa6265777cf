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

from engine.errors import StemtokError
from engine.models.codec import Codec, load_codec
from engine.models.lm import SeparationLM, load_lm
from export import parity
from export.onnx_export import FILES, export_all, sha256, write_config

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
    return resample(audio.mean(axis=0, keepdims=True), rate, 48000)[0]


def export_model(
    lm_path: Path, codec_dir: Path, out: Path, *, overwrite: bool = False,
    kv: str = "inplace", parity_audio: Path | None = None, echo: Echo = _stderr,
) -> dict[str, Any]:  # fmt: skip
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
        echo(f"exported 4 graphs in {time.perf_counter() - t0:.1f} s; checking parity")
        figures = parity.check(ref, tmp)
        echo("parity: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in figures.items()))  # fmt: skip
        parity.verify(figures)
        config["parity"] = figures
        config["source"] = {"lm": str(lm_path), "codec": str(codec_dir),
                            "lm_sha256": sha256(lm_path)}  # fmt: skip
        write_config(tmp, config)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum((out / name).stat().st_size for name in FILES)
    echo(f"{out}: {size / 1e6:.1f} MB")
    return config

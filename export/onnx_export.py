"""Write the ONNX graphs of a trained LM and codec into a model folder.

Folder layout (what :mod:`engine.runtime.model` reads)::

    encoder.onnx  lm.onnx  codec_generative.onnx  codec_aligned.onnx  embed.npy
    model_config.json   schema, sizes, token layout, rates, KV layout, sha256 of every file,
                        and the parity figures measured at export

We use the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which is not installed here, and our graphs have no data-dependent control flow.
"""

from __future__ import annotations

import io
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.atomic import write_json
from engine.models.codec import Codec
from engine.models.lm import SeparationLM
from engine.runtime.model import sha256
from export.graphs import AlignedGraph, DecoderGraph, EncoderGraph, GenerativeGraph

OPSET = 17
SCHEMA = 1
FILES = ("encoder.onnx", "lm.onnx", "codec_generative.onnx", "codec_aligned.onnx", "embed.npy")


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    dynamic: dict[str, dict[int, str]],
) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buf,  # type: ignore[arg-type]  # a file object is accepted too
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    path.write_bytes(buf.getvalue())


def cache_names(n_layers: int, static: bool) -> tuple[list[str], list[str]]:
    """Graph names of the per-layer caches: (inputs, outputs), keys of all layers then values."""
    kinds = [f"{kv}_{i}" for kv in ("key", "value") for i in range(n_layers)]
    if static:
        return [f"cache_{k}" for k in kinds], [f"cache_{k}_out" for k in kinds]
    return [f"past_{k}" for k in kinds], [f"present_{k}" for k in kinds]


def export_encoder(lm: SeparationLM, path: Path) -> None:
    cfg = lm.cfg
    mel = torch.randn(2, cfg.n_mels, cfg.mel_frames) * 3 - 7
    _export(
        EncoderGraph(lm),
        (mel,),
        path,
        ["mel"],
        ["prefix", "cond"],
        {"mel": {0: "B"}, "prefix": {0: "B"}, "cond": {0: "B"}},
    )


def export_decoder(lm: SeparationLM, path: Path, static: bool) -> None:
    """The one LM graph (prefill and steps); ``static`` picks in-place buffers or growing ones."""
    cfg = lm.cfg
    b, n, size = 2, 3, cfg.max_positions if static else 5
    x = torch.randn(b, n, cfg.dim)
    start = torch.tensor([0 if static else size], dtype=torch.long)
    cond = torch.randn(b, cfg.n_frames + 1, cfg.dim)
    caches = [torch.zeros(b, cfg.n_kv_heads, size, cfg.head_dim) for _ in range(2 * cfg.n_layers)]
    ins, outs = cache_names(cfg.n_layers, static)
    dyn: dict[str, dict[int, str]] = {"x": {0: "B", 1: "L"}, "cond": {0: "B"}, "logits": {0: "B"}}
    for name in ins:
        dyn[name] = {0: "B"} if static else {0: "B", 2: "P"}
    for name in outs:
        dyn[name] = {0: "B"} if static else {0: "B", 2: "P_plus_L"}
    _export(
        DecoderGraph(lm, static),
        (x, start, cond, *caches),
        path,
        ["x", "start", "cond", *ins],
        ["logits", *outs],
        dyn,
    )


def export_codec(codec: Codec, folder: Path, n_frames: int) -> None:
    cfg = codec.cfg
    codes = torch.randint(0, cfg.codebook_size, (2, 2, cfg.n_levels, n_frames))
    _export(
        GenerativeGraph(codec),
        (codes,),
        folder / "codec_generative.onnx",
        ["codes"],
        ["spectrum"],
        {"codes": {0: "B"}, "spectrum": {0: "B"}},
    )
    export_aligned(codec, folder / "codec_aligned.onnx", n_frames)


def export_aligned(codec: Codec, path: Path, n_frames: int) -> None:
    """The aligned decoder's graph; a codec with ``al_prior`` takes the prior masks as a third
    input, ``prior``."""
    cfg = codec.cfg
    codes = torch.randint(0, cfg.codebook_size, (2, 2, cfg.n_levels, n_frames))
    args = [codes, torch.randn(2, cfg.n_bins, n_frames * cfg.upsample)]
    names = ["codes", "mix_logmag"]
    if cfg.al_prior:
        args.append(torch.rand(2, cfg.n_bins, n_frames * cfg.upsample))
        names.append("prior")
    dynamic = {name: {0: "B"} for name in [*names, "mask"]}
    _export(AlignedGraph(codec), tuple(args), path, names, ["mask"], dynamic)


def model_config(lm: SeparationLM, codec: Codec, folder: Path, static: bool) -> dict[str, Any]:
    """The ``model_config.json`` content (without parity figures)."""
    cfg, ccfg, layout = lm.cfg, codec.cfg, lm.cfg.layout
    return {
        "schema": SCHEMA,
        "name": folder.name,
        "lm": cfg.to_json(),
        "codec": {
            "name": ccfg.name,
            "n_levels": ccfg.n_levels,
            "codebook_size": ccfg.codebook_size,
            "n_bins": ccfg.n_bins,
        },
        "layout": {
            "n_levels": layout.n_levels,
            "codebook_size": layout.codebook_size,
            "n_frames": layout.n_frames,
            "n_tracks": layout.n_tracks,
            "start": layout.start,
            "end": layout.end,
            "mix": layout.mix,
            "pad": layout.pad,
            "vocab_size": layout.vocab_size,
            "n_classes": layout.n_classes,
        },
        "rates": {
            "sample_rate": ccfg.sample_rate,
            "frame_hop": ccfg.frame_hop,
            "window_samples": cfg.n_frames * ccfg.frame_hop,
            "mel_hop": 960,
            "mel_n_fft": 2048,
            "n_mels": cfg.n_mels,
            "stft_n_fft": ccfg.n_fft,
            "stft_hop": ccfg.stft_hop,
        },
        "kv": {
            "n_layers": cfg.n_layers,
            "n_kv_heads": cfg.n_kv_heads,
            "head_dim": cfg.head_dim,
            "capacity": cfg.max_positions,
            "mode": "inplace" if static else "growing",
        },
        "files": {name: sha256(folder / name) for name in FILES},
    }


def move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an existing ``out`` is set aside first and
    removed only once the new folder is in place."""
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    return write_json(folder / "model_config.json", config)


def export_all(lm: SeparationLM, codec: Codec, folder: Path, static: bool = True) -> dict[str, Any]:
    """Write every graph, the embedding table and ``model_config.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lm, codec = lm.eval(), codec.eval()
    export_encoder(lm, folder / "encoder.onnx")
    export_decoder(lm, folder / "lm.onnx", static)
    export_codec(codec, folder, lm.cfg.n_frames)
    np.save(folder / "embed.npy", lm.embed.weight.detach().float().numpy())
    config = model_config(lm, codec, folder, static)
    write_config(folder, config)
    return config

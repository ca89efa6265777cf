"""``stemtok export --teacher RUN``: a trained teacher -> a checked ONNX model folder.

Folder layout (what :mod:`engine.runtime.teacher` reads)::

    teacher.onnx        mixture STFT (re, im) of the model's M channels "mix_spec" [B, 2M, F, T]
                        -> complex masks "masks" [B, 4, 2M, F, T]; float32, opset 17, B and T
                        dynamic (M = 2 for a stereo teacher, 1 for a mono one); with
                        ``weights="float16"`` its weights are stored as float16 and cast to
                        float32 at the top of the graph (:mod:`export.half_weights`)
    model_config.json   "kind": "teacher", schema, the teacher's sizes, STFT and rate, the
                        inference window, the mixture-consistency weighting and the rounds of
                        the multichannel Wiener filter the runtime applies after the masks
                        (``wiener_iterations``), sha256 of every file, the parity figures measured at
                        export, and where the weights came from

Parity (recorded under ``parity``, checked before the folder is moved into place), on windows
of real audio (``--parity-audio``) or seeded noise:

- ``masks_max_abs``: onnxruntime masks vs the torch model on the same (re, im) input (the
  numpy STFT of the windows), within
  1e-3 of the largest mask value (``masks_largest``, at least 1: a trained teacher's masks
  reach tens where the mixture bin is nearly empty, and float32 differs there in the 5th digit);
- ``stems_snr_db`` (worst stem) and ``stems_max_abs``: the runtime path (numpy STFT, graph,
  numpy iSTFT, no mixture consistency) vs torch's ``separate_batch`` (torch STFT and iSTFT).

We use the TorchScript-based exporter (``dynamo=False``) like the other graphs.
"""

from __future__ import annotations

import io
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.constants import MODEL_RATE, STEMS
from engine.errors import StemtokError
from engine.models.roformer import BandSplitRoformer, count_parameters, load_teacher
from engine.models.teacher_config import CONFIG_FILE, TeacherConfig
from engine.runtime.teacher import GRAPH_FILE, KIND, WEIGHTINGS, TeacherModel
from engine.training.teacher import separate_batch
from export.half_weights import cast_initialisers, round_to_float16, store_float16
from export.onnx_export import OPSET, SCHEMA, move_into_place, sha256, write_config

Echo = Callable[[str], None]
#: Inference window, overlap and residual sharing, chosen on the validation split (3-s windows,
#: the training crop length, and equal shares: see docs/teacher-report.md).
WINDOW_S = 3.0
OVERLAP_S = 0.75
CONSISTENCY = "equal"
#: Rounds of the multichannel Wiener filter after the masks: 0, chosen on the validation split
#: (1 and 2 rounds lowered the shipped teacher's SI-SDR by 0.2 dB: docs/teacher-report.md).
WIENER_ITERATIONS = 0
MASK_TOL = 1e-3
STEM_ABS_TOL = 1e-3
SNR_MIN_DB = 60.0
WEIGHT_TYPES = ("float32", "float16")  # how teacher.onnx stores its weights


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- loading
def load_source(path: Path) -> tuple[BandSplitRoformer, dict[str, Any]]:
    """A teacher from a run folder, a folder with ``teacher.pt``, a checkpoint file or a
    ``teacher.pt`` file (with ``teacher_config.json`` beside it); plus where it came from."""
    if path.is_dir() and (path / GRAPH_FILE).is_file() and not (path / CONFIG_FILE).is_file():
        return from_graph(path), {"path": str(path), "graph": GRAPH_FILE}
    if path.is_dir():
        return load_teacher(path), _folder_info(path)
    if not path.is_file():
        raise StemtokError(f"{path}: no such teacher run, folder or checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise StemtokError(f"{path}: cannot read the teacher weights ({exc})") from None
    if isinstance(state, dict) and "model" in state and "teacher_config" in state:
        cfg, weights = TeacherConfig.from_dict(state["teacher_config"]), state["model"]
    elif isinstance(state, dict) and (path.parent / CONFIG_FILE).is_file():
        cfg, weights, state = TeacherConfig.load(path.parent), state, None
    else:
        raise StemtokError(f"{path}: not a teacher checkpoint (and no {CONFIG_FILE} beside it)")
    model = BandSplitRoformer(cfg)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise StemtokError(f"{path}: weights do not fit the teacher config ({exc})") from None
    return model.eval(), _source_info(path, state)


def from_graph(folder: Path) -> BandSplitRoformer:
    """The torch teacher whose export is ``folder`` (``teacher.onnx`` + ``model_config.json``):
    the inverse of :func:`export_graph`, so a shipped model can be trained further.

    Parameters that kept their names are initialisers of the same name; every ``nn.Linear``
    weight was folded into a ``MatMul`` (transposed) whose node name is the module's scope, e.g.
    ``/layers.0.0/ff/ff.1/MatMul`` for ``layers.0.0.ff.1`` (a child's scope repeats its parent's
    name: ``ff`` then ``ff.1``). Equal weights (a fresh model's norms) are kept once, the others
    as ``Identity`` nodes of it; float16 weights sit behind a ``Cast``.
    """
    import onnx
    from onnx import numpy_helper

    meta = _read_json(folder / "model_config.json")
    if meta.get("kind") != KIND or "teacher" not in meta:
        raise StemtokError(f"{folder}: not an exported teacher (model_config.json kind)")
    model = BandSplitRoformer(TeacherConfig.from_dict(meta["teacher"]))
    graph = onnx.load(str(folder / GRAPH_FILE)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    inits |= cast_initialisers(graph)
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    wanted = model.state_dict()
    state = {k: inits[k] for k in wanted if k in inits}
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits:
            key = _scope_name(node.name) + ".weight"
            if key in wanted and key not in state:
                state[key] = inits[node.input[1]].T
    missing = [k for k in wanted if k not in state or state[k].shape != tuple(wanted[k].shape)]
    if missing:
        raise StemtokError(f"{folder}: {GRAPH_FILE} does not hold the weights of {missing[0]}")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return model.eval()


def _scope_name(node_name: str) -> str:
    """``/layers.0.0/ff/ff.1/MatMul`` -> ``layers.0.0.ff.1`` (see :func:`from_graph`)."""
    parts = node_name.strip("/").split("/")[:-1]
    name = last = parts[0] if parts else ""
    for part in parts[1:]:
        name = name[: -len(last)] + part if part.startswith(last + ".") else f"{name}.{part}"
        last = part
    return name


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StemtokError(f"{path}: cannot read ({exc})") from None
    return meta


def _folder_info(folder: Path) -> dict[str, Any]:
    """Source facts of a folder: the weights file's sha256, steps and minutes of its run."""
    from engine.models.roformer import WEIGHTS_FILE
    from engine.training.common import latest_checkpoint

    info: dict[str, Any] = {"path": str(folder)}
    ckpt = latest_checkpoint(folder)
    weights = folder / WEIGHTS_FILE if (folder / WEIGHTS_FILE).is_file() else ckpt
    if weights is not None:
        info["sha256"] = sha256(weights)
        info["weights"] = weights.name
    if ckpt is not None:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        info["checkpoint"] = ckpt.name
        info["step"] = int(state["step"])
        info["training_minutes"] = round(float(state.get("elapsed_s", 0.0)) / 60, 2)
        if "cpu_s" in state:
            info["training_cpu_hours"] = round(float(state["cpu_s"]) / 3600, 3)
    best = folder / "best.json"  # OUT/best of a run: the step and validation it was kept at
    if best.is_file():
        kept = _read_json(best)
        info["step"] = kept.get("step")
        if "cpu_s" in kept:
            info["training_cpu_hours"] = round(float(kept["cpu_s"]) / 3600, 3)
        info["valid_si_sdr"] = kept.get("valid", {}).get("si_sdr")
    return info


def _source_info(path: Path, state: dict[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(path)}
    if path.is_file():
        info["sha256"] = sha256(path)
    if state is not None and "step" in state:
        info["step"] = int(state["step"])
        info["training_minutes"] = round(float(state.get("elapsed_s", 0.0)) / 60, 2)
        if "cpu_s" in state:
            info["training_cpu_hours"] = round(float(state["cpu_s"]) / 3600, 3)
    return info


# --------------------------------------------------------------------------- graph
def export_graph(model: BandSplitRoformer, path: Path) -> None:
    """Write ``teacher.onnx`` (batch and frames dynamic)."""
    cfg = model.cfg
    ri = torch.randn(2, 2 * cfg.channels, cfg.n_bins, 23)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ri,),
            buf,  # type: ignore[arg-type]  # a file object is accepted too
            input_names=["mix_spec"],
            output_names=["masks"],
            dynamic_axes={"mix_spec": {0: "B", 3: "T"}, "masks": {0: "B", 4: "T"}},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    path.write_bytes(buf.getvalue())


def model_config(
    model: BandSplitRoformer,
    folder: Path,
    window_s: float,
    overlap_s: float,
    name: str,
    consistency: str = "power",
    wiener_iterations: int = 0,
) -> dict[str, Any]:
    """The ``model_config.json`` content (without parity figures and source) for the graph in
    ``folder``, for a model folder called ``name``."""
    cfg = model.cfg
    window = round(window_s * MODEL_RATE / cfg.hop) * cfg.hop
    return {
        "schema": SCHEMA,
        "kind": KIND,
        "name": name,
        "stems": list(STEMS),
        "teacher": asdict(cfg),
        "sizes": {
            "n_bins": cfg.n_bins,
            "n_bands": cfg.n_bands,
            "dim": cfg.dim,
            "depth": cfg.depth,
            "heads": cfg.heads,
            "n_stems": cfg.n_stems,
            "parameters": count_parameters(model),
        },
        "rates": {"sample_rate": MODEL_RATE, "stft_n_fft": cfg.n_fft, "stft_hop": cfg.hop},
        "inference": {
            "window_samples": window,
            "overlap_samples": round(overlap_s * MODEL_RATE),
            "consistency": consistency,
            "wiener_iterations": wiener_iterations,
            "channels": "stereo pairs (a mono file on both inputs)"
            if cfg.channels == 2
            else "each channel separated on its own",
        },
        "graph": {
            "file": GRAPH_FILE,
            "opset": OPSET,
            "dtype": "float32",
            "inputs": {"mix_spec": ["B", 2 * cfg.channels, cfg.n_bins, "T"]},
            "outputs": {"masks": ["B", cfg.n_stems, 2 * cfg.channels, cfg.n_bins, "T"]},
        },
        "files": {GRAPH_FILE: sha256(folder / GRAPH_FILE)},
    }


# --------------------------------------------------------------------------- parity
def parity_windows(
    audio: np.ndarray | None, window: int, n: int = 3, channels: int = 1
) -> np.ndarray:
    """``n`` windows ``[n, channels, window]`` spread over 48-kHz ``audio`` ``[channels, N]``,
    or seeded noise."""
    if audio is None or audio.shape[-1] < window:
        rng = np.random.default_rng(0)
        return (0.1 * rng.standard_normal((n, channels, window))).astype(np.float32)
    starts = np.linspace(0, audio.shape[-1] - window, n).astype(int)
    return np.stack([audio[:, s : s + window] for s in starts]).astype(np.float32)


def torch_reference(
    model: BandSplitRoformer, x: np.ndarray, ri: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(masks ``[B, 4, 2M, F, T]`` of torch on the graph input ``ri`` ``[B, 2M, F, T]``, stems
    ``[B, 4, M, N]`` of torch's own STFT path on windows ``[B, M, N]``)."""
    with torch.no_grad():
        masks = model(torch.from_numpy(ri))
        wave, _ = separate_batch(model, torch.from_numpy(x))
    return masks.numpy(), wave.numpy()


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - est) ** 2)) + 1e-20
    return float(10 * np.log10((float(np.sum(ref.astype(np.float64) ** 2)) + 1e-20) / err))


def check(model: BandSplitRoformer, folder: Path, x: np.ndarray) -> dict[str, Any]:
    """Run the exported folder on windows ``[B, M, N]`` against torch; returns the figures."""
    rt = TeacherModel(folder, "cpu", threads=None, verify=False)
    spec = rt.spectra(x, consistent=False)[0]  # (B, M, F, T)
    ri = np.stack((spec.real, spec.imag), axis=2).reshape(spec.shape[0], -1, *spec.shape[2:])
    ref_masks, ref_stems = torch_reference(model, x, ri)
    masks = rt.masks(ri)
    stems = rt.separate_windows(x, consistent=False)
    return {
        "windows": int(x.shape[0]),
        "channels": int(x.shape[1]),
        "window_seconds": round(x.shape[-1] / MODEL_RATE, 3),
        "masks_max_abs": float(np.abs(masks - ref_masks).max()),
        "masks_largest": float(np.abs(ref_masks).max()),
        "stems_max_abs": float(np.abs(stems - ref_stems).max()),
        "stems_snr_db": {
            s: _stem_snr(ref_stems[:, i], stems[:, i], x) for i, s in enumerate(STEMS)
        },
    }


def _stem_snr(ref: np.ndarray, est: np.ndarray, mix: np.ndarray) -> float | None:
    """SNR in dB of one stem, or ``None`` when torch's stem is silent (nothing to compare to:
    then ``stems_max_abs`` alone checks it)."""
    if float(np.sum(ref.astype(np.float64) ** 2)) <= 1e-10 * float(np.sum(mix**2)):
        return None
    return round(_snr_db(ref, est), 2)


def verify(figures: dict[str, Any]) -> None:
    """Raise when a figure is outside its tolerance."""
    snrs = [v for v in figures["stems_snr_db"].values() if v is not None]
    worst = min(snrs) if snrs else float("inf")
    mask_tol = MASK_TOL * max(1.0, float(figures.get("masks_largest", 1.0)))
    bad = (
        figures["masks_max_abs"] > mask_tol
        or figures["stems_max_abs"] > STEM_ABS_TOL
        or worst < SNR_MIN_DB
    )
    if bad:
        raise StemtokError(
            f"teacher parity check failed: masks differ by "
            f"{figures['masks_max_abs']:.3g} (tolerance {mask_tol:.3g}), stems by "
            f"{figures['stems_max_abs']:.3g} ({STEM_ABS_TOL}), worst stem SNR "
            f"{worst:.1f} dB (needs {SNR_MIN_DB})"
        )


def _audio_48k(path: Path | None, channels: int) -> np.ndarray | None:
    """``path`` at 48 kHz as ``[channels, N]`` (mono: the mean; stereo: the first two channels,
    a mono file on both), or ``None``."""
    if path is None or not path.is_file():
        return None
    from engine.audio import read_audio, resample

    audio, rate = read_audio(path)
    x = audio.mean(axis=0, keepdims=True) if channels == 1 else audio[[0, min(1, len(audio) - 1)]]
    return resample(x, rate, MODEL_RATE)


# --------------------------------------------------------------------------- the command
def export_teacher(
    source: Path,
    out: Path,
    *,
    overwrite: bool = False,
    parity_audio: Path | None = None,
    window_s: float = WINDOW_S,
    overlap_s: float = OVERLAP_S,
    consistency: str = CONSISTENCY,
    wiener_iterations: int = WIENER_ITERATIONS,
    weights: str = "float32",
    echo: Echo = _stderr,
) -> dict[str, Any]:
    """Export, check parity, and move the folder to ``out``; returns ``model_config.json``.

    ``weights="float16"`` rounds the model's weights to float16 and stores them so (half the
    file; onnxruntime still computes in float32); parity is then checked against the rounded
    torch model, as tightly as for float32.
    """
    if out.exists() and not overwrite:
        raise StemtokError(f"{out}: already exists (pass --overwrite to replace it)")
    if not 0 <= overlap_s < window_s:
        raise StemtokError("the inference overlap must lie in [0, window)")
    if consistency not in WEIGHTINGS:
        raise StemtokError(f"unknown mixture consistency {consistency!r} ({', '.join(WEIGHTINGS)})")
    if weights not in WEIGHT_TYPES:
        raise StemtokError(f"unknown weight type {weights!r} ({', '.join(WEIGHT_TYPES)})")
    model, info = load_source(source)
    if weights == "float16":
        round_to_float16(model)
    tmp = out.parent / f".{out.name}.export"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        export_graph(model, tmp / GRAPH_FILE)
        if weights == "float16":
            store_float16(tmp / GRAPH_FILE)
        config = model_config(
            model, tmp, window_s, overlap_s, out.name, consistency, wiener_iterations
        )
        config["graph"]["weights"] = weights
        write_config(tmp, config)
        echo(f"exported {GRAPH_FILE} in {time.perf_counter() - t0:.1f} s; checking parity")
        channels = model.cfg.channels
        x = parity_windows(
            _audio_48k(parity_audio, channels),
            config["inference"]["window_samples"],
            channels=channels,
        )
        figures = check(model, tmp, x)
        echo(
            f"parity: masks max abs {figures['masks_max_abs']:.3g}, stems max abs "
            f"{figures['stems_max_abs']:.3g}, SNR dB {figures['stems_snr_db']}"
        )
        verify(figures)
        config["parity"] = figures
        config["source"] = info
        write_config(tmp, config)
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(f"{out}: {(out / GRAPH_FILE).stat().st_size / 1e6:.1f} MB")
    return config

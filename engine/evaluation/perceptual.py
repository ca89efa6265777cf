"""The paper's perceptual metrics: ViSQOL (audio mode, 48 kHz) and DNSMOS SIG/BAK/OVRL (16 kHz).

- **ViSQOL** comes from the ``visqol-python`` package (a Python port of Google's ViSQOL v3 that
  ships its SVR model). We call its API on mono 48 kHz arrays, exactly what its CLI does after
  reading a file (mean of the channels). ``numba``, when installed, makes it ~10x faster with
  bit-identical results; its kernels are compiled once and cached on disk.
- **DNSMOS** (P.835 SIG/BAK/OVRL) uses the ONNX model that the ``speechmos`` package ships
  (``dnsmos_models/sig_bak_ovr.onnx``). We locate the file through the package metadata and run it
  with onnxruntime on numpy arrays, following ``speechmos.dnsmos`` step for step (9.01-s windows
  with a 1-s hop, short clips repeated to one window, the same polynomial mapping), so the
  numbers are equal to ``speechmos.dnsmos.run`` on the same 16 kHz audio, without importing
  speechmos' own Python code (it needs librosa and requests). The P.808 score is not computed.

Both are optional: :func:`available` says which can run, and the harness records a metric it
could not compute as missing, with the reason, rather than guessing.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import resample
from engine.errors import StemtokError, install_hint

VISQOL_RATE = 48_000
DNSMOS_RATE = 16_000
_DNSMOS_WINDOW_S = 9.01
#: Polynomials (highest power first) mapping raw SIG/BAK/OVRL to MOS, as in DNSMOS P.835.
_POLY_SIG = (-0.08397278, 1.22083953, 0.0052439)
_POLY_BAK = (-0.13166888, 1.60915514, -0.39604546)
_POLY_OVR = (-0.06766283, 1.11546468, 0.04602535)


@dataclass(frozen=True)
class DnsmosScore:
    """DNSMOS P.835 sub-scores (1-5, higher is better)."""

    sig: float
    bak: float
    ovrl: float


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def dnsmos_model_path() -> Path | None:
    """Where the speechmos wheel keeps the DNSMOS SIG/BAK/OVRL ONNX model, if installed."""
    base = _package_dir("speechmos")
    path = base / "dnsmos_models" / "sig_bak_ovr.onnx" if base else None
    return path if path and path.is_file() else None


def available() -> dict[str, str | None]:
    """``metric -> None`` when it can run, else the reason it cannot."""
    out: dict[str, str | None] = {"visqol": None, "dnsmos": None}
    if importlib.util.find_spec("visqol") is None:
        out["visqol"] = f"the visqol-python package is not installed ({install_hint('eval')})"
    if dnsmos_model_path() is None:
        out["dnsmos"] = f"the speechmos package is not installed ({install_hint('eval')})"
    elif importlib.util.find_spec("onnxruntime") is None:
        out["dnsmos"] = "onnxruntime is not installed"
    return out


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``[C, N]`` or ``[N]`` to ``[N]`` float64 by averaging channels."""
    a = np.asarray(audio, dtype=np.float64)
    return a.mean(axis=0) if a.ndim == 2 else a


def mono_at(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono ``[N']`` float64 at ``target`` Hz (averaged first, then resampled)."""
    mono = to_mono(audio)
    if rate == target:
        return mono
    return np.asarray(resample(mono[None, :], rate, target)[0], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _visqol_api() -> Any:
    try:
        from visqol.api import VisqolApi
    except ImportError as exc:
        raise StemtokError(
            f"ViSQOL needs the visqol-python package ({install_hint('eval')})"
        ) from exc
    api = VisqolApi()
    api.create(mode="audio")
    return api


def visqol(ref: np.ndarray, est: np.ndarray, rate: int = VISQOL_RATE) -> float:
    """ViSQOL MOS-LQO (audio mode) of ``est`` against ``ref``.

    Parameters
    ----------
    ref, est
        ``[C, N]`` or ``[N]`` at ``rate``; made mono and resampled to 48 kHz when needed.

    Returns
    -------
    float
        MOS-LQO in [1, 5]. An all-zero estimate gets 1.0 (ViSQOL itself would divide by zero).
    """
    r, e = mono_at(ref, rate, VISQOL_RATE), mono_at(est, rate, VISQOL_RATE)
    if not np.any(r):
        raise ValueError("ViSQOL needs a non-silent reference")
    if not np.any(e):
        return 1.0
    result = _visqol_api().measure_from_arrays(r, e, VISQOL_RATE)
    score = float(result.moslqo)
    if not math.isfinite(score):
        raise ValueError(f"ViSQOL returned {score}")
    return score


@functools.lru_cache(maxsize=1)
def _dnsmos_session() -> Any:
    path = dnsmos_model_path()
    if path is None:
        raise StemtokError(f"DNSMOS needs the speechmos package ({install_hint('eval')})")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def dnsmos_windows(audio16k: np.ndarray) -> list[np.ndarray]:
    """The 9.01-s windows (1-s hop) DNSMOS scores; clips shorter than a window are repeated."""
    x = np.asarray(audio16k)
    if x.size == 0:
        raise ValueError("DNSMOS needs a non-empty signal")
    need = int(_DNSMOS_WINDOW_S * DNSMOS_RATE)
    while len(x) < need:
        x = np.append(x, x)
    hops = int(np.floor(len(x) / DNSMOS_RATE) - _DNSMOS_WINDOW_S) + 1
    windows = []
    for i in range(hops):
        seg = x[int(i * DNSMOS_RATE) : int((i + _DNSMOS_WINDOW_S) * DNSMOS_RATE)]
        if len(seg) >= need:
            windows.append(seg)
    return windows


def dnsmos(audio: np.ndarray, rate: int = DNSMOS_RATE) -> DnsmosScore:
    """DNSMOS P.835 of a (vocal) signal.

    Parameters
    ----------
    audio
        ``[C, N]`` or ``[N]`` at ``rate``; made mono and resampled to 16 kHz when needed.
    """
    x = mono_at(audio, rate, DNSMOS_RATE)
    session = _dnsmos_session()
    raw = [
        session.run(None, {"input_1": w.astype(np.float32)[None, :]})[0][0]
        for w in dnsmos_windows(x)
    ]
    sig, bak, ovr = (np.array([r[i] for r in raw], dtype=np.float64) for i in range(3))
    return DnsmosScore(
        sig=float(np.mean(np.polyval(_POLY_SIG, sig))),
        bak=float(np.mean(np.polyval(_POLY_BAK, bak))),
        ovrl=float(np.mean(np.polyval(_POLY_OVR, ovr))),
    )

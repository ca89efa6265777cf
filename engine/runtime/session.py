"""onnxruntime sessions on CUDA when it works here, on the CPU otherwise.

``onnxruntime-gpu`` lists the CUDA provider even where the CUDA and cuDNN libraries are missing;
creating a session then prints a page of loader errors and silently runs on the CPU. We probe
once per process with the C++ logger muted, and say in one log line what we chose and why.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import onnxruntime as ort

from engine.errors import StemtokError

log = logging.getLogger("stemtok.runtime")

Device = Literal["auto", "cpu", "cuda"]
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_QUIET, _NORMAL = 4, 3  # onnxruntime logger severities: fatal only / errors


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Options for our graphs: full graph optimisation, ``threads`` intra-op threads (default:
    all cores), no spinning so an idle engine does not burn a core."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = _NORMAL
    return so


@functools.cache
def cuda_usable() -> bool:
    """True when a CUDA session can really be created in this process (probed once)."""
    if _CUDA not in ort.get_available_providers():
        return False
    from engine.runtime import probe_model

    ort.set_default_logger_severity(_QUIET)
    try:
        sess = ort.InferenceSession(
            probe_model.relu_model_bytes(), providers=[_CUDA, _CPU], sess_options=session_options(1)
        )
        return _CUDA in sess.get_providers()
    except Exception:
        return False
    finally:
        ort.set_default_logger_severity(_NORMAL)


@functools.cache
def _announce(device: str, chosen: str) -> None:
    """One line, once per process: a warning when CUDA was asked for and cannot run here."""
    if chosen == "cpu" and device != "cpu":
        why = (
            "no CUDA provider in this onnxruntime"
            if _CUDA not in ort.get_available_providers()
            else "CUDA/cuDNN libraries or a GPU not found"
        )
        if device == "cuda":
            log.warning("CUDA was asked for but cannot run here (%s): running on CPU", why)
        else:
            log.info("running on CPU (%s requested; %s)", device, why)
    else:
        log.debug("running on %s", chosen.upper())


def resolve_device(device: str) -> Literal["cpu", "cuda"]:
    """Map ``auto``/``cpu``/``cuda`` to what will run here; CUDA falls back to the CPU (with a
    warning when it was asked for by name)."""
    if device not in ("auto", "cpu", "cuda"):
        raise StemtokError(f"unknown device {device!r} (choose auto, cpu or cuda)")
    chosen: Literal["cpu", "cuda"] = "cuda" if device != "cpu" and cuda_usable() else "cpu"
    _announce(device, chosen)
    return chosen


def providers_for(device: Literal["cpu", "cuda"]) -> Sequence[str]:
    return [_CUDA, _CPU] if device == "cuda" else [_CPU]


def create_session(
    model: str | os.PathLike[str] | bytes, device: str = "auto", threads: int | None = None
) -> Any:
    """An ``InferenceSession`` for ``model`` on the device ``resolve_device`` picks."""
    chosen = resolve_device(device)
    src = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(
            src, sess_options=session_options(threads), providers=list(providers_for(chosen))
        )
    except Exception as exc:  # a damaged or foreign file: one line, not an ORT page
        name = "model bytes" if isinstance(model, bytes) else os.fspath(model)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StemtokError(f"{name}: cannot load ONNX model ({first[:200]})") from None

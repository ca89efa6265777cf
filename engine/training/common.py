"""What every stemtok trainer needs, model-agnostic: device and threads, seeding, atomic
resumable checkpoints, a log (text + JSON lines), a warm-up + cosine LR schedule that also
honours a wall-clock budget, and a progress bar.

A run folder looks like::

    OUT/checkpoints/step_00001200.pt   the latest two are kept (atomic writes)
    OUT/train.log                      human-readable lines
    OUT/metrics.jsonl                  one JSON object per logged step / evaluation

A checkpoint is a dict with at least ``step``, ``elapsed_s`` (training seconds, summed over
resumed sessions), ``model`` (state_dict), ``optimizer``, ``rng`` (see :func:`rng_state`).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from engine.errors import StemtokError

CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cpu``/``cuda``: as asked (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StemtokError("--device cuda asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def stop_on_sigterm() -> None:
    """Turn SIGTERM (``kill PID``) into KeyboardInterrupt, so a trainer's ``finally`` still
    writes its last checkpoint. Only from the main thread; elsewhere it does nothing."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(np_rng: np.random.Generator) -> dict[str, Any]:
    """Everything random a trainer uses, for a checkpoint."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], np_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = state["numpy"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(out: Path, step: int) -> Path:
    return out / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    """The newest ``step_*.pt`` of a run folder, or ``None``."""
    folder = Path(out) / CHECKPOINT_DIR
    found = sorted(folder.glob("step_*.pt")) if folder.is_dir() else []
    return found[-1] if found else None


def save_checkpoint(out: Path, state: dict[str, Any], keep: int = KEEP_CHECKPOINTS) -> Path:
    """Write ``state`` atomically as ``OUT/checkpoints/step_N.pt``; keep the newest ``keep``."""
    path = checkpoint_path(out, int(state["step"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(path.parent.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise StemtokError(f"{path}: cannot read the checkpoint ({exc})") from exc
    return state


def lr_factor(step: int, progress: float, warmup: int, final_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``final_ratio``.

    ``progress`` in [0, 1] is how far the run is (the larger of steps done / max steps and time
    spent / time budget), so a run limited by ``--minutes`` still anneals.
    """
    if step < warmup:
        return (step + 1) / warmup
    p = min(max(progress, 0.0), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * p))


@dataclass
class Budget:
    """When to stop: ``max_steps`` and/or ``minutes`` of training (summed over resumes)."""

    max_steps: int
    minutes: float | None = None

    def progress(self, step: int, elapsed_s: float) -> float:
        p = step / self.max_steps
        if self.minutes:
            p = max(p, elapsed_s / (60 * self.minutes))
        return min(p, 1.0)

    def done(self, step: int, elapsed_s: float) -> bool:
        return self.progress(step, elapsed_s) >= 1.0


class RunLog:
    """Appends human lines to ``train.log`` and JSON objects to ``metrics.jsonl``."""

    def __init__(self, out: Path, echo: TextIO | None = None):
        out.mkdir(parents=True, exist_ok=True)
        self.text = (out / "train.log").open("a", buffering=1)
        self.jsonl = (out / "metrics.jsonl").open("a", buffering=1)
        self.echo = echo

    def line(self, msg: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.text.write(f"{stamp} {msg}\n")
        if self.echo is not None:
            print(msg, file=self.echo, flush=True)

    def metrics(self, record: dict[str, Any]) -> None:
        self.jsonl.write(json.dumps(record, default=_jsonable) + "\n")

    def close(self) -> None:
        self.text.close()
        self.jsonl.close()


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    return str(x)


class Progress:
    """A tqdm bar over steps when stderr is a terminal; otherwise nothing (the log has it)."""

    def __init__(self, total: int, initial: int, enabled: bool = True):
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr)

    def update(self, n: int = 1, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, path)

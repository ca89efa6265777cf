"""What every stemtok trainer needs, model-agnostic: device and threads, seeding, atomic
resumable checkpoints, a log (text + JSON lines), a warm-up + cosine LR schedule that also
honours a wall-clock budget, and a progress bar over steps (:class:`StepBar`; the engine's
progress callbacks are :mod:`engine.progress`), and data-parallel training across processes and
machines under ``torchrun`` (:class:`ProcessGroup`).

A run folder looks like::

    OUT/checkpoints/step_00001200.pt   the latest two are kept (atomic writes)
    OUT/train.log                      human-readable lines
    OUT/metrics.jsonl                  one JSON object per logged step / evaluation

A checkpoint is a dict with at least ``step``, ``elapsed_s`` (training seconds, summed over
resumed sessions), ``model`` (state_dict), ``optimizer``, ``rng`` (see :func:`rng_state`).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every process draws the same global
batch from the same seed and trains on its share of the rows (:meth:`ProcessGroup.shard`); the
loss is computed inside :class:`~torch.nn.parallel.DistributedDataParallel`'s forward
(:meth:`Trainer.forward`), so backward averages the gradients over the processes (gloo on the
CPU, NCCL on CUDA) and every process takes the same optimiser step as one process would with the
whole batch. Rank 0 alone writes checkpoints, logs, validation results and models; every rank
resumes from the same run folder (on several machines it must be on a shared file system).
Without ``torchrun`` none of this is active and a run is exactly as in one process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
import torch

from engine.atomic import atomic_path, write_text
from engine.errors import StemtokError
from engine.training.schedule import Schedule, lr_factor

__all__ = ["Schedule", "lr_factor"]

CHECKPOINT_DIR = "checkpoints"
ConfigT = TypeVar("ConfigT")
T = TypeVar("T")
KEEP_CHECKPOINTS = 2


def with_overrides(cfg: ConfigT, **kw: Any) -> ConfigT:
    """``cfg`` (a frozen dataclass) with the values of ``kw`` that are not ``None`` (options a
    user left out keep the config's)."""
    changes = {k: v for k, v in kw.items() if v is not None}
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cpu``/``cuda``: as asked (checked). Under
    ``torchrun`` this joins the process group and gives each process its own GPU
    (``LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StemtokError("--device cuda asked for, but torch sees no CUDA GPU")
    device = torch.device(name)
    group = process_group()
    if group.world > 1:
        group.join(device.type)
        if device.type == "cuda":
            device = torch.device("cuda", group.local_rank)
            torch.cuda.set_device(device)
    return device


@dataclass
class ProcessGroup:
    """This process's place among the ``world`` processes ``torchrun`` started (``world`` 1:
    a plain run, and every method below does nothing)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where the tensors of collective calls live (CUDA for NCCL)

    @property
    def writer(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""
        return self.rank == 0

    def join(self, device_type: str) -> None:
        """Join the process group (NCCL for CUDA, gloo for the CPU), once."""
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        self.device = f"cuda:{self.local_rank}" if device_type == "cuda" else "cpu"

    def shard(self, rows: T) -> T:
        """This process's share of a batch (numpy array or tensor, rows first)."""
        if self.world == 1:
            return rows
        n = len(rows)  # type: ignore[arg-type]
        if n % self.world:
            raise StemtokError(
                f"batch size {n} does not split evenly over {self.world} processes; make it a "
                f"multiple of {self.world}"
            )
        share = n // self.world
        return rows[self.rank * share : (self.rank + 1) * share]  # type: ignore[index,no-any-return]

    def mean(self, value: float) -> float:
        """``value`` averaged over the processes."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on one (a stop they all agree on)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


@cache
def process_group() -> ProcessGroup:
    """From ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    env = os.environ
    return ProcessGroup(
        int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    )


class _Step(torch.nn.Module):
    """The module DDP wraps: its forward runs a trainer's loss function on the model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


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
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in sorted(path.parent.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise StemtokError(f"{path}: cannot read the checkpoint ({exc})") from exc
    return state


@dataclass
class Budget:
    """When to stop: ``max_steps`` and/or ``minutes`` of training (summed over resumes), and
    ``session_minutes`` of wall clock for this invocation alone (the schedule does not see it:
    the next invocation carries on where this one stopped)."""

    max_steps: int
    minutes: float | None = None
    session_minutes: float | None = None
    cpu_minutes: float | None = None  # CPU time of the process, summed over resumes
    started: float = field(default_factory=time.monotonic)

    def progress(self, step: int, elapsed_s: float) -> float:
        p = step / self.max_steps
        if self.minutes:
            p = max(p, elapsed_s / (60 * self.minutes))
        return min(p, 1.0)

    def done(self, step: int, elapsed_s: float, cpu_s: float = 0.0) -> bool:
        if self.cpu_minutes is not None and cpu_s >= 60 * self.cpu_minutes:
            return True
        session = self.session_minutes
        if session is not None and time.monotonic() - self.started >= 60 * session:
            return True
        return self.progress(step, elapsed_s) >= 1.0


class RunLog:
    """Appends human lines to ``train.log`` and JSON objects to ``metrics.jsonl``."""

    def __init__(self, out: Path, echo: TextIO | None = None):
        self.text: TextIO | None = None
        self.jsonl: TextIO | None = None
        self.echo = echo
        if not process_group().writer:  # one log per run, however many processes train
            self.echo = None
            return
        out.mkdir(parents=True, exist_ok=True)
        self.text = (out / "train.log").open("a", buffering=1)
        self.jsonl = (out / "metrics.jsonl").open("a", buffering=1)

    def line(self, msg: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if self.text is not None:
            self.text.write(f"{stamp} {msg}\n")
        if self.echo is not None:
            print(msg, file=self.echo, flush=True)

    def metrics(self, record: dict[str, Any]) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(record, default=_jsonable) + "\n")

    def close(self) -> None:
        for f in (self.text, self.jsonl):
            if f is not None:
                f.close()


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    return str(x)


class StepBar:
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
    """Atomic JSON write (tensors and numpy values as lists); by rank 0 alone under
    ``torchrun``."""
    if process_group().writer:
        write_text(path, json.dumps(obj, indent=1, default=_jsonable) + "\n")


class Trainer:
    """What the shared loop (:func:`run`) drives: one run folder's model, optimiser, data and
    counters. A subclass supplies :meth:`train_step` and :meth:`state`, and optionally
    :meth:`validate`, :meth:`save_model` and :meth:`refresh_data`.

    Counters kept across resumes (in every checkpoint): ``step``, ``elapsed`` (seconds spent in
    optimiser steps), ``cpu_s`` (CPU seconds of the whole process, all threads, validation
    included: what a run really cost) and ``best`` (the best validation ``score`` so far; its
    model is kept in ``OUT/best/``).
    """

    out: Path
    log_every: int = 10
    eval_every: int = 100
    checkpoint_minutes: float = 3.0
    refresh_minutes: float = 10.0

    def __init__(self) -> None:
        self.step, self.elapsed, self.cpu_s = 0, 0.0, 0.0
        self.best: float | None = None
        self.valid_key = ""  # what the validation set is; ``best`` only counts on the same one
        self.group = process_group()
        self._ddp: torch.nn.Module | None = None

    def forward(self, fn: Callable[..., T], model: torch.nn.Module, *args: Any) -> T:
        """``fn(model, *args)`` (a training step's losses); under ``torchrun`` inside
        DistributedDataParallel's forward, so that backward averages the gradients over the
        processes. ``model`` is the same on every call (it is wrapped once)."""
        if self.group.world == 1:
            return fn(model, *args)
        if self._ddp is None:
            from torch.nn.parallel import DistributedDataParallel

            device = next(model.parameters()).device
            ids = [device.index] if device.type == "cuda" else None
            self._ddp = DistributedDataParallel(
                _Step(model), device_ids=ids, find_unused_parameters=False
            )
        result: T = self._ddp(fn, *args)
        return result

    def train_step(self, budget: Budget) -> dict[str, Any]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def validate(self) -> dict[str, Any] | None:
        """Validation record (``score``: higher is better), or ``None`` without a valid split."""
        return None

    def save_model(self, folder: Path) -> None:
        """The model's weights and config (what export reads) into ``folder``."""

    def refresh_data(self) -> int:
        """Pick up training songs that appeared since the start; returns how many."""
        return 0

    def step_line(self, rec: dict[str, Any]) -> str:
        return f"step {rec['step']} loss {rec['loss']:.4f} lr {rec['lr']:.2e}"

    def valid_line(self, rec: dict[str, Any]) -> str:
        return f"valid step {self.step}: {json.dumps(rec)}"

    def counters(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed_s": self.elapsed,
            "cpu_s": self.cpu_s,
            "best": self.best,
            "valid_key": self.valid_key,
        }

    def restore_counters(self, state: dict[str, Any]) -> None:
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.cpu_s = float(state.get("cpu_s", state["elapsed_s"]))
        same = state.get("valid_key", "") == self.valid_key
        self.best = state.get("best") if same else None  # a new validation set starts afresh

    def checkpoint(self) -> Path | None:
        """Save a checkpoint (rank 0 only; the others return ``None``)."""
        if not self.group.writer:
            return None
        return save_checkpoint(self.out, self.state() | self.counters())


def run(trainer: Trainer, budget: Budget, log: RunLog, progress: bool = True) -> dict[str, Any]:
    """Train until ``budget`` is spent or the process is interrupted (Ctrl-C, SIGTERM): log
    every ``log_every`` steps, validate every ``eval_every`` (keeping the best model in
    ``OUT/best/``), checkpoint every ``checkpoint_minutes``, look for new songs every
    ``refresh_minutes``; always end with a checkpoint and the last model in ``OUT``. Returns the
    last step's record (under ``torchrun``: its ``loss`` averaged over the processes; the
    processes stop together, when one's budget is spent)."""
    group = trainer.group
    total = budget.max_steps if budget.max_steps < 10**9 else 0
    bar = StepBar(total, trainer.step, progress and group.writer)
    last_ckpt = last_refresh = time.monotonic()
    cpu0 = time.process_time()
    rec: dict[str, Any] = {"step": trainer.step}

    def tick() -> dict[str, Any]:
        nonlocal cpu0
        now = time.process_time()
        trainer.cpu_s += now - cpu0
        cpu0 = now
        return {
            "elapsed_s": round(trainer.elapsed, 1),
            "cpu_s": round(trainer.cpu_s, 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    try:
        if trainer.best is None:  # where a run (or a new validation set) starts, e.g. --init
            _validate(trainer, log, tick)
        while not group.any(budget.done(trainer.step, trainer.elapsed, trainer.cpu_s)):
            rec = trainer.train_step(budget)
            if group.world > 1:
                rec["loss"] = group.mean(float(rec["loss"]))
            stamp = tick()
            bar.update(1, loss=rec["loss"])
            if trainer.step % trainer.log_every == 0:
                log.metrics(rec | stamp)
                log.line(f"{trainer.step_line(rec)} ({trainer.elapsed / 60:.1f} min)")
            if trainer.step % trainer.eval_every == 0:
                _validate(trainer, log, tick)
            if time.monotonic() - last_ckpt > 60 * trainer.checkpoint_minutes:
                if (path := trainer.checkpoint()) is not None:
                    log.line(f"checkpoint {path.name}")
                last_ckpt = time.monotonic()
            if time.monotonic() - last_refresh > 60 * trainer.refresh_minutes:
                if added := trainer.refresh_data():
                    log.line(f"data: {added} new songs")
                last_refresh = time.monotonic()
    finally:
        bar.close()
        if trainer.step > 0:
            tick()
            trainer.checkpoint()
            if group.writer:
                trainer.save_model(trainer.out)
            log.line(
                f"saved step {trainer.step} ({trainer.elapsed / 60:.1f} min of training, "
                f"{trainer.cpu_s / 3600:.2f} CPU hours)"
            )
    return rec


def _validate(trainer: Trainer, log: RunLog, tick: Any) -> None:
    if not trainer.group.writer:  # the others go on; they wait for it at the next step
        return
    ev = trainer.validate()
    if ev is None:
        return
    log.metrics({"step": trainer.step, "valid": ev} | tick())
    log.line(trainer.valid_line(ev))
    score = ev.get("score")
    if score is not None and (trainer.best is None or score > trainer.best):
        trainer.best = float(score)
        trainer.save_model(trainer.out / "best")
        write_json(
            trainer.out / "best" / "best.json",
            {"step": trainer.step, "cpu_s": round(trainer.cpu_s, 2), "valid": ev},
        )
        log.line(f"best so far: {score:.2f} at step {trainer.step} -> {trainer.out / 'best'}")

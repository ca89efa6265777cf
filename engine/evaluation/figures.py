"""Report pictures with matplotlib (Agg, no display): per-stem bar charts of each metric and
mel spectrograms of the excerpt, true stem beside every system's (like the paper's Figure 2).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from engine import dsp
from engine.constants import STEMS
from engine.evaluation.aggregate import METRICS
from engine.evaluation.excerpt import Excerpt

BAR_METRICS = ("visqol", "sdr", "si_sdr", "mrstft", "nisqa_mos")
DPI = 80


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(result: dict[str, Any], metric: str, path: Path) -> Path | None:
    """Grouped bars: x = stems and avg, one bar per system; ``None`` when nothing to plot."""
    systems = result["summary"]["systems"]
    groups = [*STEMS, "avg"]
    values = {
        name: [
            (s["avg"].get(metric) or {}).get("value")
            if g == "avg"
            else (s["stems"][g].get(metric) or {}).get("value")
            for g in groups
        ]
        for name, s in systems.items()
    }
    if not any(v is not None for vs in values.values() for v in vs):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 2.8), dpi=DPI)
    width = 0.8 / max(1, len(values))
    for i, (name, vs) in enumerate(values.items()):
        xs = np.arange(len(groups)) + (i - (len(values) - 1) / 2) * width
        ys = [np.nan if v is None else v for v in vs]
        ax.bar(xs, ys, width, label=name)
    label, higher = METRICS[metric]
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(label + (" ↑" if higher else " ↓"))
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _mel_db(x: np.ndarray, rate: int) -> np.ndarray:
    n_fft = 2048 if rate > 24_000 else 1024
    mono = np.asarray(x, dtype=np.float64).mean(axis=0)
    mel = dsp.log_mel(
        mono,
        rate,
        n_fft=n_fft,
        hop=n_fft // 4,
        n_mels=128,
        power=1,
        floor=1e-6,
        pad_mode="constant",
        last_frame=True,
    )  # natural log of the magnitude
    return np.asarray(mel * (20.0 / np.log(10.0)))  # dB


def spectrogram_grid(excerpt: Excerpt, stem: str, path: Path) -> Path:
    """Mixture, true stem and every system's stem as mel spectrograms side by side."""
    panels = [("input mixture", excerpt.mixture), (f"true {stem}", excerpt.references[stem])]
    panels += [(f"system: {name}", stems[stem]) for name, stems in excerpt.systems.items()]
    mels = [_mel_db(a, excerpt.rate) for _, a in panels]
    top = max(float(m.max()) for m in mels)
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.1 * len(panels), 2.3), dpi=DPI, sharey=True, squeeze=False
    )
    seconds = excerpt.mixture.shape[1] / excerpt.rate
    for ax, (title, _), mel in zip(axes[0], panels, mels, strict=True):
        ax.imshow(
            mel,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80.0,
            vmax=top,
            extent=(0.0, seconds, 0.0, mel.shape[0]),
        )
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("s", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel("mel band", fontsize=7)
    fig.suptitle(f"{stem}: '{excerpt.song}' from {excerpt.start_s:.2f} s", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def available() -> bool:
    """Whether matplotlib is installed (the report is written without pictures otherwise)."""
    return importlib.util.find_spec("matplotlib") is not None


def write_all(result: dict[str, Any], excerpt: Excerpt | None, folder: Path) -> dict[str, Path]:
    """Every figure of the report; ``label -> file`` (empty without matplotlib)."""
    out: dict[str, Path] = {}
    if not available():
        return out
    for metric in BAR_METRICS:
        path = bar_chart(result, metric, folder / f"bars_{metric}.png")
        if path:
            out[f"{METRICS[metric][0]} per stem"] = path
    if excerpt is not None:
        for stem in STEMS:
            out[f"{stem} spectrograms"] = spectrogram_grid(
                excerpt, stem, folder / f"spectrogram_{stem}.png"
            )
    return out

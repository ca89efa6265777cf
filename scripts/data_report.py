"""Write docs/data-report.md: what a synthetic set holds and evidence that its vocals are sung.

For songs of a set made by ``stemtok data synth`` it measures, per stem, the vocal-activity ratio
(Silero, energy/pitch detector) and the voiced ratio of a YIN pitch track; for the vocal stem of
procedural songs it compares the pitch track with the notes the song writer gave the singer
(the song is re-written from its seed). It plots one pitch track over its notes and adds the
set's diversity table and, when given, a ``stemtok data bench`` result.

    .venv/bin/python scripts/data_report.py data/synth-full --songs 12 \
        --bench runs/data-bench.json --out docs/data-report.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio import read_audio
from engine.constants import MODEL_RATE, STEMS
from engine.data import pitch, songwriter, stats, vad

RATE = MODEL_RATE  # the factory renders at the model's rate


def _voiced_ratio(x: np.ndarray) -> float:
    """Share of frames above -40 dB of the loudest frame that YIN finds pitched."""
    _, f0 = pitch.yin(x, RATE)
    return float(np.mean(~np.isnan(f0))) if len(f0) else 0.0


def _envelope_modulation(x: np.ndarray) -> float:
    """Share of the amplitude envelope's modulation energy between 2 and 8 Hz (syllable rate)."""
    hop = RATE // 100
    env = np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(hop) / hop, "same")[::hop])
    env = env - env.mean()
    spec = np.abs(np.fft.rfft(env)) ** 2
    f = np.fft.rfftfreq(len(env), 1 / 100)
    return float(spec[(f >= 2) & (f <= 8)].sum() / max(spec[f > 0.5].sum(), 1e-12))


def measure_song(folder: Path, song: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"song": song["name"], "singer": song["render"].get("singer")}
    for stem in STEMS:
        x, _ = read_audio(folder / f"{stem}.wav")
        mono = x.mean(axis=0)
        row[f"{stem}_vad_silero"] = (
            vad.vad_ratio(vad.vocal_segments(mono, RATE, method="silero"), len(mono) / RATE)
            if vad.silero_available()
            else None
        )
        row[f"{stem}_vad_energy"] = vad.vad_ratio(
            vad.vocal_segments(mono, RATE, method="energy"), len(mono) / RATE
        )
        row[f"{stem}_voiced"] = _voiced_ratio(mono)
        if stem == "vocals":
            row["vocals_syllable_modulation"] = _envelope_modulation(mono)
            if song["source"] == "procedural":
                spec = songwriter.write_song(
                    song["seed"], min_seconds=cfg["min_seconds"], max_seconds=cfg["max_seconds"]
                )
                notes = [n for p in spec.parts_for("vocals") for n in p.notes]
                cents, voiced = pitch.cents_off(mono, RATE, notes)
                row["vocals_median_abs_cents"] = float(np.median(np.abs(cents)))
                row["vocals_voiced_in_notes"] = voiced
    return row


def plot_pitch(folder: Path, song: dict[str, Any], cfg: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, _ = read_audio(folder / "vocals.wav")
    t, f0 = pitch.yin(x.mean(axis=0), RATE)
    spec = songwriter.write_song(
        song["seed"], min_seconds=cfg["min_seconds"], max_seconds=cfg["max_seconds"]
    )
    fig, ax = plt.subplots(figsize=(11, 3.2))
    for n in (n for p in spec.parts_for("vocals") for n in p.notes):
        ax.plot([n.start, n.start + n.duration], [n.pitch] * 2, color="#f4a261", lw=5, alpha=0.6)
    ax.plot(t, 69 + 12 * np.log2(f0 / 440.0), ".", ms=2, color="#264653")
    ax.set_xlim(0, min(30.0, t[-1]))
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(f"{song['name']} — vocal stem pitch (YIN, dots) over the written notes (bars)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def per_stem_table(rows: list[dict[str, Any]]) -> str:
    keys = ("vad_silero", "vad_energy", "voiced")
    lines = [
        "| stem | VAD ratio (silero) | VAD ratio (energy) | YIN voiced ratio |",
        "|---|---|---|---|",
    ]
    for stem in STEMS:
        vals = []
        for k in keys:
            xs = [r[f"{stem}_{k}"] for r in rows if r[f"{stem}_{k}"] is not None]
            vals.append(f"{np.mean(xs):.2f} ± {np.std(xs):.2f}" if xs else "–")
        lines.append(f"| {stem} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def vocal_table(rows: list[dict[str, Any]]) -> str:
    cols = (
        "song",
        "singer",
        "vocals_median_abs_cents",
        "vocals_voiced_in_notes",
        "vocals_syllable_modulation",
        "vocals_vad_silero",
        "vocals_vad_energy",
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def sum_check(set_dir: Path) -> tuple[int, float, str]:
    """Songs checked, the largest |mixture - sum of stems| over every sample, and its song."""
    from engine.data.musdb import list_tracks

    worst, where, n = 0.0, "", 0
    for track in list_tracks(set_dir):
        audio = track.load([*STEMS, "mixture"])
        err = float(np.abs(audio.stems["mixture"] - sum(audio.stems[s] for s in STEMS)).max())
        if err >= worst:
            worst, where = err, track.name
        n += 1
    return n, worst, where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("set", type=Path)
    ap.add_argument("--songs", type=int, default=12)
    ap.add_argument("--split", default="test")
    ap.add_argument("--bench", type=Path, help="JSON written by 'stemtok data bench --json'")
    ap.add_argument("--out", type=Path, default=Path("docs/data-report.md"))
    args = ap.parse_args()
    manifest = json.loads((args.set / "manifest.json").read_text())
    cfg = manifest["config"]
    songs = [s for s in manifest["songs"] if s["split"] == args.split][: args.songs]
    rows = [measure_song(args.set / s["split"] / s["name"], s, cfg) for s in songs]
    fig_dir = args.out.with_suffix("")
    fig_dir.mkdir(parents=True, exist_ok=True)
    proc = next(s for s in songs if s["source"] == "procedural")
    plot_pitch(args.set / proc["split"] / proc["name"], proc, cfg, fig_dir / "pitch-track.png")
    summary = stats.summarise(args.set)
    n_sum, worst, where = sum_check(args.set)
    parts = [
        "# Data factory report",
        "",
        f"Set: `{args.set}` made by `stemtok data synth --minutes {cfg['minutes']:g} "
        f"--seed {cfg['seed']} --backend {cfg['backend']}` (generator version {cfg['version']}).",
        "Made with `scripts/data_report.py`; every number below was measured on that set.",
        "",
        "## Diversity",
        "",
        stats.format_markdown(summary),
        "",
        f"## Which stem sings? ({len(rows)} {args.split} songs)",
        "",
        "Vocal-activity ratio = share of the song inside detected segments (each ≥ 2 s, gaps ≤ "
        "0.5 s merged); YIN voiced ratio = share of non-silent frames with a clear pitch.",
        "",
        per_stem_table(rows),
        "",
        "## The vocal stem against the written notes",
        "",
        "Median |cents| between the YIN pitch and the note being sung (frames inside notes, "
        "edges trimmed), the voiced share of those frames, and the share of the vocal envelope's "
        "modulation energy at syllable rates (2–8 Hz).",
        "",
        vocal_table(rows),
        "",
        f"![pitch track]({fig_dir.name}/pitch-track.png)",
        "",
        "## The mixture is the sum of the stems",
        "",
        f"Read back from the files of all {n_sum} songs: the largest |mixture − (vocals + drums "
        f"+ bass + other)| over every sample and channel is {worst:.2e} (song `{where}`); the "
        "requirement is 1e-5.",
        "",
    ]
    if args.bench and args.bench.exists():
        b = json.loads(args.bench.read_text())
        parts += (
            [
                "## Render speed",
                "",
                "`stemtok data bench` result:",
                "",
                "| what | value |",
                "|---|---|",
            ]
            + [f"| {k} | {v} |" for k, v in b.items()]
            + [""]
        )
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

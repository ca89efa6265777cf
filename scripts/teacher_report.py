"""Measurements behind docs/teacher-report.md (each subcommand prints JSON and can write it).

    .venv/bin/python scripts/teacher_report.py curves runs/teacher docs/teacher-report/history.png \
        --start-cpu-hours 2.83 --history docs/teacher-report/history.jsonl
    .venv/bin/python scripts/teacher_report.py windows data/synth-full --split valid \
        --model resources/models/teacher --seconds 20 --json docs/teacher-report/windows.json
    .venv/bin/python scripts/teacher_report.py vad data/synth-full --split test \
        --model resources/models/teacher --json docs/teacher-report/vad.json

``curves``: training loss and validation SI-SDR per stem against CPU hours (``--history``: a
committed file that keeps every run's records, earlier runs drawn beside; ``--compare``: the
average of another run folder, dashed). ``windows``: SI-SDR per stem of the exported teacher with
inference windows of 3, 6 and 12 s (training crops are 3 s) on the first ``--seconds`` of every
song, each with the residual of the mixture consistency shared by stem power or equally (only
equally for a teacher whose masks sum to 1: there is no residual to share), and 3-s windows
with 1 and 2 rounds of the multichannel Wiener filter. ``vad``: the vocal segments the pseudo-labeller
keeps from the teacher's vocals against those found in the true vocals (time overlap).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import atomic
from engine.constants import MODEL_RATE, STEMS
from engine.data import vad
from engine.data.musdb import list_tracks
from engine.dsp import si_sdr
from engine.runtime.teacher import TeacherSeparator


def cpu_hours(row: dict[str, Any]) -> float:
    """CPU hours a metrics record was written at (``cpu_s``; older records: ``cpu_h``, or the
    training time of a run that counted no CPU time)."""
    if "cpu_s" in row:
        return float(row["cpu_s"]) / 3600
    return float(row.get("cpu_h", row.get("elapsed_s", 0.0) / 3600))


def keep_history(run: Path, history: Path, start_cpu_h: float) -> list[dict[str, Any]]:
    """Copy ``run``'s metrics records into ``history`` (JSONL, meant to be committed: a run
    folder may not outlive its machine) under the run's folder name, replacing the records an
    earlier call copied from it; return every record of the file, oldest run first. Each
    record gets ``run`` and ``start_cpu_h`` (the CPU hours of the weights it started from)."""
    kept = [json.loads(x) for x in history.read_text().splitlines()] if history.is_file() else []
    kept = [r for r in kept if r["run"] != run.name] + _records(run, start_cpu_h)
    atomic.write_text(history, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _records(run: Path, start_cpu_h: float) -> list[dict[str, Any]]:
    """The metrics records of a run folder, each with ``run`` and ``start_cpu_h``."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{"run": run.name, "start_cpu_h": start_cpu_h} | r for r in rows]


def curves(
    run: Path,
    out: Path,
    compare: Path | None = None,
    start_cpu_h: float = 0.0,
    history: Path | None = None,
) -> dict[str, Any]:
    """The whole history of a run folder (every resumed invocation appends to its
    ``metrics.jsonl``): training loss and validation SI-SDR per stem against CPU hours, a
    dotted line where a run was resumed. ``start_cpu_h``: CPU hours spent on the weights the
    run started from (``--init``). ``history``: a file that keeps the records of every run
    drawn before (``keep_history``); earlier runs are drawn beside this one (loss in grey,
    validation average dashed), also when their folders are gone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = (
        keep_history(run, history, start_cpu_h)
        if history is not None
        else _records(run, start_cpu_h)
    )
    runs = list(dict.fromkeys(r["run"] for r in every))
    train = [r for r in every if "loss" in r and r["run"] == run.name]
    valid = [r for r in every if "valid" in r and r["run"] == run.name]
    resumes = [cpu_hours(b) for a, b in itertools.pairwise(train) if _resumed(a, b)]
    resumes += _resumed_in_log(run, train, resumes)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name in (n for n in runs if n != run.name):
        old_train = [r for r in every if "loss" in r and r["run"] == name]
        old_valid = [r for r in every if "valid" in r and r["run"] == name]
        a.plot([_at(r) for r in old_train], [r["loss"] for r in old_train], lw=0.4, color="grey")
        b.plot(
            [_at(r) for r in old_valid],
            [r["valid"]["si_sdr"]["avg"] for r in old_valid],
            ls="--",
            lw=1.0,
            label=f"avg, {name}",
        )
    a.plot([_at(r) for r in train], [r["loss"] for r in train], lw=0.5)
    a.set(xlabel="CPU hours", ylabel="training loss", title="loss (time + spectral + MR L1)")
    for stem in (*STEMS, "avg"):
        b.plot(
            [_at(r) for r in valid],
            [r["valid"]["si_sdr"].get(stem) for r in valid],
            label=stem,
            lw=1.6 if stem == "avg" else 0.8,
        )
    if compare is not None:
        old = [json.loads(x) for x in (compare / "metrics.jsonl").read_text().splitlines()]
        old = [r for r in old if "valid" in r]
        b.plot(
            [cpu_hours(r) for r in old],
            [r["valid"]["si_sdr"]["avg"] for r in old],
            ls="--",
            color="black",
            lw=1.0,
            label=f"avg, {compare.name}",
        )
    for ax in (a, b):
        for h in resumes:
            ax.axvline(start_cpu_h + h, color="grey", ls=":", lw=0.7)
    floor = valid[-1]["valid"]["mixture_si_sdr"]["avg"] if valid else None
    if floor is not None:
        b.axhline(floor, color="grey", ls="--", lw=0.8, label="mixture (avg)")
    b.set(
        xlabel="CPU hours", ylabel="SI-SDR (dB)", title=f"validation SI-SDR per stem ({run.name})"
    )
    b.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    best = max(valid, key=lambda r: r["valid"]["si_sdr"].get("avg", -99.0)) if valid else None
    return {
        "runs": runs,
        "steps": train[-1]["step"] if train else 0,
        "cpu_hours": round(_at(train[-1]) if train else start_cpu_h, 2),
        "resumes": len(resumes),
        "last_valid": valid[-1] if valid else None,
        "best_valid": best,
    }


def _at(row: dict[str, Any]) -> float:
    """CPU hours of a history record, counted from the weights its run started from."""
    return float(row["start_cpu_h"]) + cpu_hours(row)


def _resumed_in_log(run: Path, train: list[dict[str, Any]], known: list[float]) -> list[float]:
    """CPU hours of the resumes ``train.log`` records ("resumed from step_N.pt") that the
    metrics alone do not show."""
    log = run / "train.log"
    steps = (
        [int(m) for m in re.findall(r"resumed from step_(\d+)\.pt", log.read_text())]
        if log.is_file()
        else []
    )
    found = []
    for step in steps:
        after = [r for r in train if r["step"] > step]
        if after and cpu_hours(after[0]) not in known:
            found.append(cpu_hours(after[0]))
    return found


def _resumed(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether record ``b`` was written by a later invocation than ``a`` (the steps went back:
    a resume from an older checkpoint)."""
    return bool(b["step"] <= a["step"])


def windows(
    data: Path, split: str, model: Path, seconds: float, wiener: tuple[int, ...] = (0, 1, 2)
) -> dict[str, Any]:
    sep = TeacherSeparator(model, device="cpu")
    hop = sep.model.hop
    out: dict[str, Any] = {}
    tracks = list_tracks(data, split)
    consistent = bool(sep.model.config["teacher"].get("consistent", False))
    weightings = ("equal",) if consistent else ("power", "equal")
    runs = [(w, c, 0) for c in weightings for w in (3.0, 6.0, 12.0)]
    runs += [(3.0, "equal", k) for k in wiener if k > 0]
    for win_s, weighting, rounds in runs:
        sep.model.window = round(win_s * MODEL_RATE / hop) * hop
        sep.model.overlap = min(MODEL_RATE, sep.model.window // 4)
        sep.model.consistency = weighting
        sep.model.wiener_iterations = rounds
        scores: dict[str, list[float]] = {s: [] for s in STEMS}
        t0 = time.perf_counter()
        for track in tracks:
            audio = track.load(max_seconds=seconds)
            est = sep.separate(audio.mixture, audio.rate)
            for s in STEMS:
                if float(np.sqrt(np.mean(audio.stems[s] ** 2))) > 1e-3:
                    ref = audio.stems[s].reshape(1, -1)  # the channels one after the other
                    scores[s].append(si_sdr(ref, est[s].reshape(1, -1), zero_mean=True, eps=1e-12))
        per = {s: round(float(np.mean(v)), 2) for s, v in scores.items() if v}
        per["avg"] = round(float(np.mean(list(per.values()))), 2)
        key = f"{win_s:g}s, {weighting}, wiener {rounds}"
        out[key] = {"si_sdr": per, "wall_s": round(time.perf_counter() - t0, 1)}
        print(key, out[key], flush=True)
    return {"split": split, "songs": len(tracks), "seconds_per_song": seconds, "windows": out}


def _covered(segments: list[tuple[float, float]], n: int, hop: float) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in segments:
        mask[int(a / hop) : int(np.ceil(b / hop))] = True
    return mask


def vad_agreement(data: Path, split: str, model: Path) -> dict[str, Any]:
    sep = TeacherSeparator(model, device="cpu")
    rows, hop = [], 0.01
    for track in list_tracks(data, split):
        audio = track.load()
        t0 = time.perf_counter()
        est = sep.separate(audio.mixture, audio.rate)
        wall = time.perf_counter() - t0
        true = vad.detect(audio.stems["vocals"], audio.rate)
        got = vad.detect(est["vocals"], audio.rate)
        n = int(np.ceil(audio.duration / hop))
        t, g = _covered(list(true.segments), n, hop), _covered(list(got.segments), n, hop)
        rows.append(
            {
                "song": track.name,
                "seconds": round(audio.duration, 1),
                "method": got.method,
                "true_ratio": round(true.ratio, 3),
                "est_ratio": round(got.ratio, 3),
                "true_segments": len(true.segments),
                "est_segments": len(got.segments),
                "precision": round(float((t & g).sum() / max(g.sum(), 1)), 3),
                "recall": round(float((t & g).sum() / max(t.sum(), 1)), 3),
                "iou": round(float((t & g).sum() / max((t | g).sum(), 1)), 3),
                "separate_rtf": round(wall / audio.duration, 3),
            }
        )
        print(rows[-1], flush=True)
    keys = ("precision", "recall", "iou", "separate_rtf")
    mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}
    return {"split": split, "songs": rows, "mean": mean}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("curves")
    c.add_argument("run", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--compare", type=Path, help="another run whose validation average to draw")
    c.add_argument(
        "--start-cpu-hours",
        type=float,
        default=0.0,
        help="CPU hours spent on the weights the run started from (--init)",
    )
    c.add_argument(
        "--history",
        type=Path,
        help="JSONL that keeps every run's records (docs/teacher-report/history.jsonl): this "
        "run's are copied in, earlier runs are drawn beside it",
    )
    for name in ("windows", "vad"):
        s = sub.add_parser(name)
        s.add_argument("data", type=Path)
        s.add_argument("--split", default="test")
        s.add_argument("--model", type=Path, required=True)
        s.add_argument("--seconds", type=float, default=20.0)
        s.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "curves":
        result = curves(args.run, args.out, args.compare, args.start_cpu_hours, args.history)
    elif args.cmd == "windows":
        result = windows(args.data, args.split, args.model, args.seconds)
    else:
        result = vad_agreement(args.data, args.split, args.model)
    text = json.dumps(result, indent=1)
    print(text)
    if getattr(args, "json", None):
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

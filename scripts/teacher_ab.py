"""Teacher designs compared by how fast they learn per CPU hour (docs/teacher-report.md).

    .venv/bin/python scripts/teacher_ab.py run data/synth-full --out runs/ab --cpu-minutes 30 \
        --arms roformer,rnn,roformer-l1sdr --threads 1
    .venv/bin/python scripts/teacher_ab.py plot runs/ab docs/teacher-report/ab.png \
        --json docs/teacher-report/ab.json

Self-training (docs/teacher-report.md, "Self-training on real recordings"): both arms start
from the shipped teacher; ``remixit`` also trains on the pseudo-labelled real songs of
``--extra-data`` (as many crops as of DATA, every one of them remixed across songs)::

    .venv/bin/python scripts/teacher_ab.py run data/synth-full --out runs/ab-self \
        --arms roformer,remixit --init resources/models/teacher --lr 3e-4 \
        --extra-data data/pseudo --cpu-minutes 20 --threads 1

``run`` trains every arm from scratch (or from ``--init``) in ``OUT/<arm>`` with the same seed,
data, validation crops and optimiser, until the process has used ``--cpu-minutes`` of CPU time (all threads:
arms are compared at equal cost even when the machine is shared); a second call resumes arms
that have not spent their budget. ``plot`` draws the validation SI-SDR (average over stems)
of every arm against CPU minutes and prints, per arm, the validation SI-SDR per stem at the
largest CPU time at which every arm was validated (linear between validations).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.constants import STEMS
from engine.models.roformer import TeacherConfig
from engine.training.teacher import TeacherTrainConfig, train_teacher

#: name -> (model config changes, training config changes), all from the ``small`` stereo teacher
ARMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "roformer": ({}, {}),
    "rnn": ({"block": "rnn"}, {}),
    "roformer-sdr": ({}, {"loss": "sdr"}),
    "roformer-l1sdr": ({}, {"loss": "l1+sdr"}),
    "roformer-6s": ({}, {"crop_seconds": 6.0, "batch_size": 2}),
    "remixit": ({}, {}),
}
#: arms that also train on the ``--extra-data`` sets (pseudo-labelled songs): each extra set
#: gets as many crops as DATA, and every crop of it is remixed across songs (DATA's crops with
#: the usual probability, 0.5, each on its own draw)
SELF_TRAINING: frozenset[str] = frozenset({"remixit"})


def run(
    data: Path,
    out: Path,
    arms: list[str],
    cpu_minutes: float,
    eval_every: int = 50,
    *,
    init: Path | None = None,
    lr: float | None = None,
    extra: list[Path] | None = None,
) -> None:
    start = None
    if init is not None:
        from export.teacher import load_source

        start = load_source(init)[0].state_dict()
    for arm in arms:
        model_kw, train_kw = ARMS[arm]
        cfg = TeacherConfig.small(**model_kw)
        sets = [data]
        if arm in SELF_TRAINING:
            if not extra:
                raise SystemExit(f"arm {arm!r} needs --extra-data")
            sets += extra
            train_kw = train_kw | {
                "set_weights": (1.0,) * len(sets),
                "set_remix": (TeacherTrainConfig.remix_prob,) + (1.0,) * len(extra),
            }
        if lr is not None:
            train_kw = train_kw | {"lr": lr}
        tcfg = replace(
            TeacherTrainConfig(eval_every=eval_every, schedule="cosine", max_steps=10**9),
            cpu_minutes=cpu_minutes,
            **train_kw,
        )
        # cosine over a budget the CPU limit ends first: the schedule is the same warm-up and
        # near-peak rate in every arm (progress is steps / max_steps, almost 0)
        print(f"== {arm}: {cpu_minutes:g} CPU minutes", flush=True)
        train_teacher(cfg, tcfg, sets, out / arm, progress=False, echo=None, init=start)


def _valid(run_dir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "valid" in r]


def _step_at(rows: list[dict[str, Any]], cpu_s: float) -> int:
    return int(np.interp(cpu_s, [r["cpu_s"] for r in rows], [r["step"] for r in rows]))


def plot(out: Path, figure: Path) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {d.name: _valid(d) for d in sorted(out.iterdir()) if (d / "metrics.jsonl").is_file()}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        raise SystemExit(f"{out}: no arm has validated yet")
    common_cpu = min(v[-1]["cpu_s"] for v in curves.values())
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    table: dict[str, Any] = {}
    for arm, rows in curves.items():
        ax.plot(
            [r["cpu_s"] / 60 for r in rows],
            [r["valid"]["si_sdr"]["avg"] for r in rows],
            label=arm,
            lw=1.2,
        )
        cpu = [r["cpu_s"] for r in rows]
        table[arm] = {
            "cpu_minutes": round(common_cpu / 60, 1),
            "steps_by_then": _step_at(rows, common_cpu),
        }
        for stem in (*STEMS, "avg"):
            values = [r["valid"]["si_sdr"].get(stem, float("nan")) for r in rows]
            table[arm][stem] = round(float(np.interp(common_cpu, cpu, values)), 2)
    floor = next(iter(curves.values()))[-1]["valid"]["mixture_si_sdr"]["avg"]
    ax.axhline(floor, color="grey", ls="--", lw=0.8, label="mixture")
    ax.axvline(common_cpu / 60, color="grey", ls=":", lw=0.8)
    ax.set(
        xlabel="CPU minutes (all threads)",
        ylabel="validation SI-SDR, avg (dB)",
        title="teacher designs at equal CPU time",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    return {"compared_at_cpu_minutes": round(common_cpu / 60, 1), "arms": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("data", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {list(ARMS)}")
    r.add_argument("--cpu-minutes", type=float, default=30.0)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--eval-every", type=int, default=50, help="validate every this many steps")
    r.add_argument("--init", type=Path, help="start every arm from this teacher's weights")
    r.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    r.add_argument(
        "--extra-data",
        type=Path,
        action="append",
        help="pseudo-labelled set for the self-training arms (repeatable)",
    )
    p = sub.add_parser("plot")
    p.add_argument("out", type=Path)
    p.add_argument("figure", type=Path)
    p.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "run":
        arms = args.arms.split(",")
        unknown = [a for a in arms if a not in ARMS]
        if unknown:
            ap.error(f"unknown arm {unknown[0]!r} (one of {', '.join(ARMS)})")
        torch.set_num_threads(args.threads)
        run(
            args.data,
            args.out,
            arms,
            args.cpu_minutes,
            args.eval_every,
            init=args.init,
            lr=args.lr,
            extra=args.extra_data,
        )
        return
    result = plot(args.out, args.figure)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

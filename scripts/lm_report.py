"""Write the results part of docs/lm-report.md from the LM evaluation JSONs and training logs.

Inputs (made by ``python -m engine.training.lm_eval`` and ``stemtok train lm``)::

    EVALS/small-final.json    the shipped small model (end of its run)
    EVALS/small-1200.json     the same run at 1200 steps (the ablations' budget)
    EVALS/a1-1200.json ...    ablations A1-A3 at 1200 steps
    EVALS/prefix-only-736.json  the first small run, without the aligned mixture (no ViSQOL)
    RUNS/lm-*/metrics.jsonl   training and validation curves

Everything from the line ``## Results`` to the next ``## `` heading after it (or the end) is
replaced; the evaluation JSONs are copied next to it (docs/lm-report/) so each number can be
traced.

    .venv/bin/python scripts/lm_report.py --evals runs/lm-eval --runs runs
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

STEMS = ("vocals", "drums", "bass", "other")
ABLATIONS = (
    ("Main", "–", "small-1200"),
    ("Frozen extractor", "A1", "a1-1200"),
    ("Loss weight", "A2", "a2-1200"),
    ("Parallel", "A3", "a3-1200"),
)


def _load(evals: Path, name: str) -> dict[str, Any] | None:
    path = evals / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _row(values: dict[str, float] | None) -> str:
    if not values:
        return " | ".join(["–"] * 5)
    return " | ".join(f"{values[k]:.2f}" if k in values else "–" for k in (*STEMS, "avg"))


def _curves(runs: Path, names: list[str], png: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name in names:
        path = runs / name / "metrics.jsonl"
        if not path.is_file():
            continue
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        valid = [r for r in recs if r.get("split") == "valid"]
        if not valid:
            continue
        steps = [r["step"] for r in valid]
        axes[0].plot(steps, [r["loss"] for r in valid], marker="o", label=name)
        axes[1].plot(steps, [r["level_acc"][0] for r in valid], marker="o", label=name)
    axes[0].set(xlabel="step", ylabel="valid loss")
    axes[1].set(xlabel="step", ylabel="valid next-token accuracy, level 0")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def _final_valid(runs: Path, name: str) -> dict[str, Any] | None:
    path = runs / name / "metrics.jsonl"
    if not path.is_file():
        return None
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    valid = [r for r in recs if r.get("split") == "valid"]
    return valid[-1] if valid else None


def _acc(values: list[float]) -> str:
    return " | ".join(f"{v:.3f}" for v in values)


def results(evals: Path, runs: Path, fig_dir: Path) -> list[str]:
    main = _load(evals, "small-final")
    at1200 = _load(evals, "small-1200")
    prefix = _load(evals, "prefix-only-736")
    out = ["## Results", ""]
    if main is None:
        return [*out, "The evaluation of the final small model has not been run yet.", ""]
    k = len(main["teacher_forced_acc"])
    out += [
        f"Held-out material: the {main['settings']['split']} split of the token set "
        f"(`{main['tokens']}`), {main['windows']} windows of 4 s from "
        f"{main['settings']['max_songs']} songs never seen in training (variant 0, no "
        "augmentation). Greedy decoding. ViSQOL v3 audio mode at 48 kHz mono; SI-SDR on the "
        "aligned decoder's sample-aligned output. Windows whose reference stem is silent are left "
        f"out for that stem ({main['silent_windows_skipped']}).",
        "",
        f"Model: `{main['lm']}`.",
        "",
        "### Per-stem quality of the separated stems",
        "",
        "| tokens | decoder | metric | vocals | drums | bass | other | avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("generated (the LM)", "generative", "visqol", "generated/generative"),
        ("generated (the LM)", "aligned", "visqol", "generated/aligned"),
        ("generated (the LM)", "aligned", "si_sdr", "generated/aligned"),
        ("oracle (codec ceiling)", "generative", "visqol", "oracle/generative"),
        ("oracle (codec ceiling)", "aligned", "visqol", "oracle/aligned"),
        ("oracle (codec ceiling)", "aligned", "si_sdr", "oracle/aligned"),
        ("none (zero latents)", "aligned", "visqol", "none/aligned"),
        ("none (zero latents)", "aligned", "si_sdr", "none/aligned"),
        ("— mixture as every stem", "–", "si_sdr", "mixture/aligned"),
    ]
    for tokens, decoder, metric, key in rows:
        vals = main.get(metric, {}).get(key)
        name = "ViSQOL" if metric == "visqol" else "SI-SDR dB"
        out.append(f"| {tokens} | {decoder} | {name} | {_row(vals)} |")
    out += [
        "",
        "### Next-token accuracy per RVQ level (teacher-forced, held-out windows)",
        "",
        "| model | mixture | " + " | ".join(f"L{i}" for i in range(k)) + " |",
        "|---|---|" + "---|" * k,
    ]
    for label, ev in (
        ("small (final)", main),
        ("small @1200", at1200),
        ("prefix only @736", prefix),
    ):
        if ev is None:
            continue
        out.append(f"| {label} | own | {_acc(ev['teacher_forced_acc'])} |")
        out.append(f"| {label} | another song's | {_acc(ev['teacher_forced_acc_other_mixture'])} |")
    out += [
        "",
        f"Generated tokens equal to the oracle ones, per level (final model): "
        f"{', '.join(f'{v:.3f}' for v in main['generated_equals_oracle'])}; mean entropy "
        f"{main['mean_entropy_nats']} nats per token.",
        "",
        "### Ablations (the paper's Table 3 shape), all at 1200 steps of the same recipe",
        "",
        "ViSQOL of the generated stems through the generative decoder (the paper's setting), then "
        "through the aligned decoder, and the level-0 next-token accuracy.",
        "",
        "| Variant | ID | vocals | drums | bass | other | avg | aligned avg | SI-SDR avg | acc L0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, key, name in ABLATIONS:
        ev = _load(evals, name)
        if ev is None:
            out.append(f"| {label} | {key} | not evaluated | | | | | | | |")
            continue
        gen = ev.get("visqol", {}).get("generated/generative")
        al = ev.get("visqol", {}).get("generated/aligned", {})
        sdr = ev.get("si_sdr", {}).get("generated/aligned", {})
        out.append(
            f"| {label} | {key} | {_row(gen)} | {al.get('avg', float('nan')):.2f} | "
            f"{sdr.get('avg', float('nan')):.2f} | {ev['teacher_forced_acc'][0]:.3f} |"
        )
    names = ["lm-small", "lm-a1", "lm-a2", "lm-a3", "old/lm-small-prefix-only"]
    out += ["", "### Training curves", ""]
    if _curves(runs, names, fig_dir / "curves.png"):
        out += [f"![validation curves]({fig_dir.name}/curves.png)", ""]
    out += ["| run | steps | train minutes | valid loss | valid acc L0 |", "|---|---|---|---|---|"]
    for name in names:
        last = _final_valid(runs, name)
        log = runs / name / "metrics.jsonl"
        if last is None:
            continue
        recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        minutes = max(r.get("elapsed_s", 0.0) for r in recs) / 60
        out.append(
            f"| {name} | {last['step']} | {minutes:.0f} | {last['loss']:.3f} | "
            f"{last['level_acc'][0]:.3f} |"
        )
    out.append("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--evals", type=Path, default=Path("runs/lm-eval"))
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--report", type=Path, default=Path("docs/lm-report.md"))
    ap.add_argument("--reading", type=Path, help="Markdown appended after the tables")
    args = ap.parse_args()
    text = args.report.read_text()
    head = text.split("RESULTS_PLACEHOLDER")[0].split("## Results")[0].rstrip() + "\n\n"
    rest = text.split("## Results", 1)[1] if "## Results" in text else ""
    tail = "\n## " + rest.split("\n## ", 1)[1] if "\n## " in rest else ""
    fig_dir = args.report.with_suffix("")
    body = results(args.evals, args.runs, fig_dir)
    if args.reading and args.reading.is_file():
        body += [args.reading.read_text().rstrip(), ""]
    args.report.write_text(head + "\n".join(body).rstrip() + "\n" + tail)
    fig_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.evals.glob("*.json")):
        shutil.copyfile(path, fig_dir / path.name)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()

"""The README's promises: two set-up commands (the first one safe to run again), the extras the
training commands need in a form that works from a checkout, and a quality table that matches
the measured report."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def commands(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line for b in blocks for line in b.splitlines() if line.strip()]


def test_setup_is_two_commands_and_the_first_runs_twice() -> None:
    first, second = commands(section("Set up and run"))
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install . && ")
    assert first.endswith("-o stems --overwrite")  # a second run replaces the stems
    assert second == "bash scripts/test.sh"


def test_training_commands_say_which_extras_and_how() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = section("Make data, train, evaluate")
    install, activate, *rest = commands(text)
    assert install == ".venv/bin/pip install '.[train,eval]'"
    assert {"train", "eval"} <= set(extras["optional-dependencies"])
    assert activate == "source .venv/bin/activate" and rest[0].startswith("stemtok data synth")
    assert "stemtok[" not in README


def test_quality_table_matches_the_teacher_report() -> None:
    """Every row's SDR, SI-SDR and ViSQOL averages are the report's (keep them in step)."""
    report = (ROOT / "docs" / "teacher-report" / "eval-report.md").read_text()

    def averages(table: str) -> dict[str, str]:
        part = report.split(f"### {table}\n", 1)[1].split("\n### ", 1)[0]
        rows = [r.split("|") for r in part.splitlines() if r.startswith("| ")]
        return {r[1].strip(): r[-2].strip() for r in rows}

    measured = [averages(t) for t in ("SDR (BSS-Eval v4)", "SI-SDR", "Table 1: ViSQOL per stem")]
    rows = [r.split("|") for r in section("Quality and speed").splitlines() if r.startswith("| ")]
    shown = {r[1].strip(" *"): [c.strip() for c in r[3:6]] for r in rows[1:]}
    assert set(shown) == {"default", "teacher", "dsp", "oracle", "mixture"}
    for name, values in shown.items():
        assert values == [m[name] for m in measured], name
    runtime = (ROOT / "docs" / "runtime-report.md").read_text()
    teacher = (ROOT / "docs" / "teacher-report.md").read_text()
    assert f"Median {shown_rtf(rows, 'default')} " in runtime
    assert f"**{shown_rtf(rows, 'teacher')}**" in teacher


def shown_rtf(rows: list[list[str]], name: str) -> str:
    return next(r[6].strip() for r in rows if r[1].strip(" *") == name)

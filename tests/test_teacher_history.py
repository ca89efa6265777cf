"""scripts/teacher_report.py curves --history: a teacher's training history outlives its run
folder (the committed JSONL keeps every run's records; the figure draws them all)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _report():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "teacher_report", REPO / "scripts/teacher_report.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(folder: Path, steps: int, avg0: float) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for step in range(10, steps + 1, 10):
        rows.append({"step": step, "loss": 1.0 / step, "cpu_s": step * 36.0})
        if step % 50 == 0:
            si = {s: avg0 + step / 100 for s in ("vocals", "drums", "bass", "other", "avg")}
            mix = {s: -5.0 for s in si}
            rows.append(
                {"step": step, "cpu_s": step * 36.0, "valid": {"si_sdr": si, "mixture_si_sdr": mix}}
            )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_history_keeps_runs_whose_folders_are_gone(tmp_path: Path) -> None:
    report = _report()
    history = tmp_path / "history.jsonl"
    first = _run(tmp_path / "teacher-a", 100, 1.0)
    out = report.curves(first, tmp_path / "a.png", start_cpu_h=2.0, history=history)
    assert out["runs"] == ["teacher-a"]
    assert out["cpu_hours"] == 3.0  # 2 h of the start weights + 100 steps x 36 CPU s
    assert (tmp_path / "a.png").stat().st_size > 0
    for p in first.iterdir():
        p.unlink()
    first.rmdir()

    second = _run(tmp_path / "teacher-b", 150, 0.5)
    out = report.curves(second, tmp_path / "b.png", start_cpu_h=2.0, history=history)
    assert out["runs"] == ["teacher-a", "teacher-b"]
    assert out["best_valid"]["step"] == 150
    rows = [json.loads(x) for x in history.read_text().splitlines()]
    assert {r["run"] for r in rows} == {"teacher-a", "teacher-b"}

    # drawn again after more steps: the run's records are replaced, not added twice
    (second / "metrics.jsonl").write_text(
        (second / "metrics.jsonl").read_text()
        + json.dumps({"step": 160, "loss": 0.1, "cpu_s": 5760.0})
        + "\n"
    )
    out = report.curves(second, tmp_path / "b.png", start_cpu_h=2.0, history=history)
    rows = [json.loads(x) for x in history.read_text().splitlines()]
    assert sum(r["run"] == "teacher-b" for r in rows) == 15 + 3 + 1
    assert sum(r["run"] == "teacher-a" for r in rows) == 10 + 2
    assert out["steps"] == 160

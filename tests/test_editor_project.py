"""Editor projects: save and reopen without separating again, atomically; a missing source is
reported and nothing is lost; broken projects are refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
from qt_fixtures import FakeSeparator, qapp, settings, tone_file, wait_until

from app.editor import project
from app.editor.session import Session
from app.editor.window import MainWindow
from engine.constants import STEMS
from engine.errors import StemtokError

__all__ = ["qapp", "settings"]


def separated(settings: QSettings, fake: FakeSeparator, song: Path) -> Session:
    s = Session(lambda: fake, settings)
    s.open_path(song)
    wait_until(lambda: s.state == "loaded")
    return s


def test_round_trip_restores_the_state_without_separating(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    fake = FakeSeparator()
    song = tone_file(tmp_path / "song.flac", 1.0, rate=22050, depth="24")
    s = separated(settings, fake, song)
    s.set_strip("vocals", gain_db=-4.5, pan=0.25)
    s.set_strip("drums", mute=True)
    s.set_strip("bass", solo=True)
    s.set_master(-2.0)
    s.view.update(bpm=96.0, ruler="bars")
    path = s.save_project(tmp_path / "proj" / "mine")
    assert path.name == "mine.stemtok" and project.stems_dir(path).is_dir()
    assert not [p for p in path.parent.rglob(".*")]  # no temporary files left behind
    assert len(fake.calls) == 1

    other = FakeSeparator()
    win = MainWindow(Session(lambda: other, settings))
    win.session.open_path(path)
    r = win.session
    wait_until(lambda: r.task is None)
    assert other.calls == [] and r.state == "loaded" and not r.source_missing
    assert r.strips == s.strips and r.master_db == -2.0 and r.view["bpm"] == 96.0
    assert r.sample_format == "int24" and r.rate == 22050 and r.source == song
    np.testing.assert_array_equal(r.bank, s.bank)  # 32-bit float stems: exact
    for name in STEMS:
        np.testing.assert_array_equal(r.confidence[name], s.confidence[name])
    assert r.mixer is not None and s.mixer is not None
    np.testing.assert_array_equal(r.mixer.render(), s.mixer.render())
    assert win.editor.strips["drums"].mute.isChecked() and win.editor.canvas.frames == 22050
    assert r.recent()[0] == str(path)
    win.close()


def test_missing_source_is_reported_and_saving_keeps_its_path(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    song = tone_file(tmp_path / "gone.wav", 0.5)
    s = separated(settings, FakeSeparator(), song)
    path = s.save_project(tmp_path / "p.stemtok")
    song.unlink()
    messages: list[str] = []
    r = Session(lambda: FakeSeparator(), settings)
    r.message.connect(messages.append)
    r.open_project(path)
    wait_until(lambda: r.task is None)
    assert r.state == "loaded" and r.source_missing
    assert "missing" in messages[-1] and str(song) in messages[-1]
    np.testing.assert_allclose(r.mixture, s.bank.sum(0), atol=1e-6)  # the stems' sum stands in
    r.save_project(path)
    assert json.loads(path.read_text())["source"] == str(song)


def test_broken_projects_are_refused_in_one_line(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    s = separated(settings, FakeSeparator(), tone_file(tmp_path / "a.wav", 0.3))
    path = s.save_project(tmp_path / "a.stemtok")
    (project.stems_dir(path) / "bass.wav").unlink()
    with pytest.raises(StemtokError, match=r"bass\.wav: stem file missing"):
        project.load(path)
    messages: list[str] = []
    r = Session(lambda: FakeSeparator(), settings)
    r.message.connect(messages.append)
    r.open_project(path)
    wait_until(lambda: r.task is None)
    assert r.state == "empty" and "missing" in messages[-1]
    path.write_text("{not json")
    with pytest.raises(StemtokError, match="not a readable stemtok project"):
        project.load(path)
    path.write_text(json.dumps({"format": "stemtok-project", "version": 99}))
    with pytest.raises(StemtokError, match="version 99"):
        project.load(path)


def test_a_kept_reroll_take_is_saved(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    s = separated(settings, FakeSeparator(), tone_file(tmp_path / "r.wav", 1.0, rate=8000))
    path = s.save_project(tmp_path / "r.stemtok")
    s.reroll(0.2, 0.6, seed=5)
    wait_until(lambda: s.take is not None)
    s.keep_take(True)
    s.save_project(path)
    np.testing.assert_array_equal(project.load(path).stems["vocals"], s.bank[0])

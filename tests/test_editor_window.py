"""The editor window with its real widgets (offscreen): drop, progress, cancel, solo/mute, gain,
seek, loop, zoom, re-roll, no audio device. The separator is a fast fake with the same
``separate()`` signature."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, QSettings, Qt
from PyQt6.QtWidgets import QApplication
from qt_fixtures import (
    FakeSeparator,
    click,
    drag,
    drop_files,
    key,
    qapp,
    settings,
    tone_file,
    wait_until,
)

from app.editor.session import Session
from app.editor.window import MainWindow
from engine.constants import STEMS

__all__ = ["qapp", "settings"]  # fixtures


@pytest.fixture
def fake() -> FakeSeparator:
    return FakeSeparator(steps=4, delay=0.01)


@pytest.fixture
def win(qapp: QApplication, settings: QSettings, fake: FakeSeparator) -> Iterator[MainWindow]:
    w = MainWindow(Session(lambda: fake, settings))
    w.resize(1200, 720)
    w.show()
    yield w
    w.close()
    if w.session.task is not None:
        wait_until(lambda: w.session.task is None or w.session.task.finished.is_set())


def loaded(win: MainWindow, song: Path) -> MainWindow:
    drop_files(win, [song])
    wait_until(lambda: win.session.state == "loaded")
    return win


def test_drop_shows_progress_then_the_lanes(win: MainWindow, tmp_path: Path) -> None:
    song = tone_file(tmp_path / "song.wav", 1.5)
    seen: list[float] = []
    win.session.progressChanged.connect(lambda f, left: seen.append(f))
    assert win.pages.currentWidget() is win.drop
    event = drop_files(win, [song])
    assert event.isAccepted()
    assert win.pages.currentWidget() is win.progress
    assert "song.wav" in win.progress.title.text()
    assert win.progress.left.text() == "estimating time left ..."  # nothing measured yet
    wait_until(lambda: win.session.state == "loaded")
    assert seen[0] == 0.0 and seen[-1] == pytest.approx(1.0) and np.all(np.diff(seen) >= 0)
    assert win.progress.bar.value() == 1000
    assert win.pages.currentWidget() is win.editor
    canvas = win.editor.canvas
    assert [lane.name for lane in canvas.lanes] == ["mix", *STEMS]
    assert canvas.frames == int(1.5 * 44100) and canvas.confidence_rate == 12.5
    assert all(lane.confidence is not None for lane in canvas.lanes[1:])
    assert win.session.recent()[0] == str(song)
    assert "song" in win.windowTitle()


def test_cancel_stops_the_separation(win: MainWindow, tmp_path: Path, fake: FakeSeparator) -> None:
    fake.steps, fake.delay = 500, 0.01
    drop_files(win, [tone_file(tmp_path / "long.wav", 1.0)])
    wait_until(lambda: win.session.task is not None and win.session.task.fraction > 0)
    wait_until(lambda: win.progress.left.text().startswith("about "), timeout=10)
    assert win.progress.left.text().endswith(" left") and win.progress.bar.value() > 0
    click(win.progress.cancel)
    wait_until(lambda: win.session.task is None, timeout=5)
    assert win.session.state == "empty" and win.pages.currentWidget() is win.drop
    assert "cancelled" in win.statusBar().currentMessage()  # type: ignore[union-attr]


def test_an_unreadable_drop_is_reported(win: MainWindow, tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    drop_files(win, [bad])
    QApplication.processEvents()
    assert win.session.state == "empty" and win.session.task is None
    assert "notes.wav" in win.statusBar().currentMessage()  # type: ignore[union-attr]


def test_solo_mute_and_gain_buttons_drive_the_mix(win: MainWindow, tmp_path: Path) -> None:
    s = loaded(win, tone_file(tmp_path / "song.wav")).session
    strips = win.editor.strips
    click(strips["vocals"].solo)
    assert s.strips["vocals"].solo
    assert s.mixer is not None
    np.testing.assert_allclose(s.mixer.target, [[1, 1], [0, 0], [0, 0], [0, 0]])
    assert [lane.dim for lane in win.editor.canvas.lanes] == [False, False, True, True, True]
    assert win.editor.canvas.lanes[2].why == "not soloed"
    click(strips["vocals"].solo)
    click(strips["drums"].mute)
    strips["bass"].gain.setValue(-12)  # half-dB steps: -6 dB
    strips["other"].pan.setValue(-100)
    assert s.strips["drums"].mute and s.strips["bass"].gain_db == -6.0
    want = np.array([[1, 1], [0, 0], [0.501, 0.501], [1, 0]])
    np.testing.assert_allclose(s.mixer.target, want, atol=1e-3)
    s.toggle("drums", "mute")  # the view follows the session too
    assert not strips["drums"].mute.isChecked()
    assert strips["bass"].db.text() == "-6.0 dB"


def test_keyboard_shortcuts_toggle_solo_and_mute(win: MainWindow, tmp_path: Path) -> None:
    s = loaded(win, tone_file(tmp_path / "song.wav")).session
    win.activateWindow()
    win.editor.canvas.setFocus()
    key(win.editor.canvas, Qt.Key.Key_2)
    key(win.editor.canvas, Qt.Key.Key_3, Qt.KeyboardModifier.AltModifier)
    assert s.strips["drums"].solo and s.strips["bass"].mute


def test_click_seeks_drag_selects_and_loops(win: MainWindow, tmp_path: Path) -> None:
    s = loaded(win, tone_file(tmp_path / "song.wav", 2.0)).session
    c = win.editor.canvas
    y = int(c.lane_rect(2).center().y())
    click(c, QPoint(c.width() // 2, y))
    assert s.player is not None
    assert s.player.now / s.rate == pytest.approx(1.0, abs=0.01)
    drag(c, QPoint(c.width() // 4, y), QPoint(c.width() * 3 // 4, y))
    assert c.selection == pytest.approx((0.5, 1.5), abs=0.01)
    win.loop.setChecked(True)
    assert s.player.loop == pytest.approx((0.5 * 44100, 1.5 * 44100), abs=500)


def test_zoom_and_scroll_keep_the_view_inside_the_song(win: MainWindow, tmp_path: Path) -> None:
    loaded(win, tone_file(tmp_path / "song.wav", 2.0))
    c, bar = win.editor.canvas, win.editor.scrollbar
    whole = c.spp
    c.zoom(8)
    assert c.spp == pytest.approx(whole / 8)
    assert bar.maximum() > 0 and bar.pageStep() == int(c.width() * c.spp)
    bar.setValue(bar.maximum())
    assert c.start + c.width() * c.spp == pytest.approx(c.frames, abs=c.spp + 1)
    c.zoom(1e-6)
    assert c.start == 0


def test_play_without_an_audio_device_reports_it(
    win: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sounddevice as sd

    def no_device(*a: object, **k: object) -> None:
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "OutputStream", no_device)
    s = loaded(win, tone_file(tmp_path / "song.wav")).session
    click(win.play_btn)
    assert s.player is not None and not s.player.playing
    assert "playback unavailable" in win.statusBar().currentMessage()  # type: ignore[union-attr]
    s.set_strip("vocals", mute=True)  # everything else still works
    assert win.editor.strips["vocals"].mute.isChecked()


def test_reroll_swaps_a_region_and_either_take_can_stay(win: MainWindow, tmp_path: Path) -> None:
    s = loaded(win, tone_file(tmp_path / "song.wav", 2.0, rate=8000)).session
    before = s.bank.copy()
    win.editor.canvas.selection = (0.75, 1.25)
    click(win.reroll_btn)
    wait_until(lambda: s.take is not None)
    take = s.take
    assert take is not None and win.take_b.isChecked() and win.keep.isVisibleTo(win)
    a, b = take.start, take.stop
    assert (a, b) == (int(0.5 * 8000), int(1.5 * 8000))  # the region plus the 0.25-s fades
    np.testing.assert_array_equal(s.bank[:, :, :a], before[:, :, :a])
    np.testing.assert_array_equal(s.bank[:, :, b:], before[:, :, b:])
    inner = slice(int(0.75 * 8000), int(1.25 * 8000))
    assert not np.allclose(s.bank[:, :, inner], before[:, :, inner])  # another seed, other stems
    np.testing.assert_allclose(s.bank.sum(0), before.sum(0), atol=1e-5)  # still the mixture
    jumps = np.abs(np.diff(s.bank[0, 0, a - 2 : a + 200])).max()
    assert jumps < 0.05  # faded in, no step at the border
    conf_b = s.confidence["vocals"].copy()
    click(win.take_a)
    np.testing.assert_array_equal(s.bank, before)
    f0 = round(a / 8000 * 12.5)
    assert not np.array_equal(s.confidence["vocals"], conf_b)  # the strip follows the take
    assert conf_b[f0] == pytest.approx(0.2)  # the fake's new take starts its ramp at 0.2
    click(win.take_b)
    click(win.keep)
    assert s.take is None and not np.allclose(s.bank[:, :, inner], before[:, :, inner])


def test_space_plays_and_pauses_and_spectrogram_view_draws(
    win: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.editor.player import Player

    monkeypatch.setattr(Player, "open", lambda self: True)  # a device that takes anything
    s = loaded(win, tone_file(tmp_path / "song.wav", 1.0)).session
    win.editor.canvas.setFocus()
    key(win.editor.canvas, Qt.Key.Key_Space)
    assert s.player is not None and s.player.playing
    key(win.editor.canvas, Qt.Key.Key_Space)
    assert not s.player.playing
    win.spectro.setChecked(True)
    assert win.spectro_task is not None  # made in the background
    wait_until(lambda: win.spectro_task is None)
    img = win.editor.canvas.grab().toImage()
    lane = win.editor.canvas.lanes[0]
    assert lane.spectro is not None and lane.spectro.height() == 256
    r = win.editor.canvas.lane_rect(0)
    top = img.pixelColor(200, int(r.top() + 20)).value()  # near Nyquist: quiet, dark
    bottom = img.pixelColor(200, int(r.bottom() - 12)).value()  # low tones: bright
    assert bottom > top


def test_master_level_and_bar_ruler(win: MainWindow, tmp_path: Path) -> None:
    s = loaded(win, tone_file(tmp_path / "song.wav", 2.0)).session
    win.editor.master.setValue(-12)
    assert s.master_db == -6.0 and s.mixer is not None
    np.testing.assert_allclose(s.mixer.target, 10 ** (-6 / 20), rtol=1e-5)
    assert win.editor.master_db.text() == "master -6.0 dB"
    win.ruler.setCurrentText("bars")
    win.bpm.setValue(90.0)
    c = win.editor.canvas
    assert c.ruler_bars and s.view == {"ruler": "bars", "bpm": 90.0}
    marks = c._bar_marks(100.0, 0.0, 10.0)  # 100 px/s; a 4/4 bar at 90 BPM lasts 8/3 s
    assert [m[1] for m in marks[:4]] == ["1", "2", "3", "4"]
    assert [m[0] for m in marks[:4]] == pytest.approx([0, 8 / 3, 16 / 3, 8])
    assert [m[1] for m in c._bar_marks(10.0, 0.0, 60.0)[:3]] == ["1", "5", "9"]  # >= 60 px apart

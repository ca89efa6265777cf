"""Drop-to-karaoke: songs dropped on the karaoke target queue up and become instrumentals (with
the guide vocal and key options), written beside each song without replacing anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
from qt_fixtures import SHARES, FakeSeparator, drop_files, qapp, settings, tone_file, wait_until

from app.editor.karaoke import KaraokeOptions, KaraokeQueue, output_for
from app.editor.session import Session
from app.editor.window import MainWindow
from engine.audio import probe, read_audio

__all__ = ["qapp", "settings"]


def test_a_batch_drop_queues_and_writes_instrumentals(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    fake = FakeSeparator(steps=3)
    win = MainWindow(Session(lambda: fake, settings))
    win.show()
    songs = [tone_file(tmp_path / f"song{i}.wav", 0.5, rate=22050) for i in range(3)]
    (tmp_path / "readme.txt").write_text("not a song")
    panel = win.karaoke_panel
    panel.guide.setChecked(True)
    panel.guide_db.setValue(-20)
    assert win.karaoke.options == KaraokeOptions(-20.0, 0.0, None)
    event = drop_files(panel, [*songs, tmp_path / "readme.txt"])
    assert event.isAccepted()
    assert win.karaoke.current == songs[0] and win.karaoke.waiting == songs[1:]
    assert "2 waiting" in panel.label.text()
    wait_until(lambda: len(win.karaoke.done) == 3)
    assert win.karaoke.done == [tmp_path / f"song{i}-karaoke.wav" for i in range(3)]
    assert win.session.state == "empty"  # the editor itself was not touched
    mix, rate = read_audio(songs[1])
    got, got_rate = read_audio(win.karaoke.done[1])
    want = mix * (SHARES[1] + SHARES[2] + SHARES[3] + SHARES[0] * 10 ** (-20 / 20))
    assert got_rate == rate and probe(win.karaoke.done[1]).sample_format == "int16"
    np.testing.assert_allclose(got, want, atol=1 / 2**15)
    assert "3 made" in panel.label.text()
    panel.set_folder(tmp_path / "party")
    drop_files(panel, songs[:1])
    wait_until(lambda: len(win.karaoke.done) == 4)
    assert win.karaoke.done[-1] == tmp_path / "party" / "song0-karaoke.wav"
    assert panel.where.text() == "into party/"
    win.close()


def test_outputs_never_replace_a_file_and_follow_the_folder(tmp_path: Path) -> None:
    song = tone_file(tmp_path / "a.flac", 0.1)
    assert output_for(song, None) == tmp_path / "a-karaoke.flac"
    (tmp_path / "a-karaoke.flac").write_bytes(b"x")
    assert output_for(song, None) == tmp_path / "a-karaoke-2.flac"
    assert output_for(tmp_path / "b.ogg", tmp_path / "k") == tmp_path / "k" / "b-karaoke.wav"


def test_key_shift_and_cancel(qapp: QApplication, tmp_path: Path) -> None:
    fake = FakeSeparator(steps=400, delay=0.01)
    q = KaraokeQueue(lambda: fake, KaraokeOptions(None, 2.0, tmp_path / "out"))
    songs = [tone_file(tmp_path / f"s{i}.wav", 0.5) for i in range(2)]
    q.add(songs)
    wait_until(lambda: q.task is not None and q.task.fraction > 0)
    q.cancel()
    wait_until(lambda: q.task is None)
    assert q.done == [] and q.waiting == [] and not (tmp_path / "out").exists()
    fake.steps = 1
    q.add(songs[:1])
    wait_until(lambda: q.task is None and bool(q.done))
    got, _ = read_audio(q.done[0])
    spec = np.abs(np.fft.rfft(got[0]))
    peak_hz = np.argmax(spec) / 0.5  # bins of 2 Hz
    assert abs(peak_hz - 220 * 2 ** (2 / 12)) < 6  # 220 Hz moved up two semitones

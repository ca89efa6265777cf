"""Editor export through the real dialog: stems into a folder or the remix into one file, at the
source rate and bit depth; the remix file is what the player plays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
from qt_fixtures import FakeSeparator, drop_files, qapp, settings, tone_file, wait_until

from app.editor.exporter import ExportPlan, run_export, source_depth
from app.editor.player import Player
from app.editor.session import Session
from app.editor.window import MainWindow
from engine.audio import probe, read_audio
from engine.errors import StemtokError

__all__ = ["qapp", "settings"]


def window(settings: QSettings, song: Path) -> MainWindow:
    w = MainWindow(Session(lambda: FakeSeparator(), settings))
    w.show()
    drop_files(w, [song])
    wait_until(lambda: w.session.state == "loaded")
    return w


def test_source_depth_rules() -> None:
    assert source_depth("int16", "wav") == "16" and source_depth("int16", "flac") == "16"
    assert source_depth("int24", "flac") == "24" and source_depth("float32", "wav") == "32f"
    assert source_depth("float32", "flac") == "24" and source_depth("int8", "flac") == "16"
    assert source_depth("int32", "wav") == "32f" and source_depth("int16", "mp3") is None


def test_remix_export_is_what_the_player_plays(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    w = window(settings, tone_file(tmp_path / "song.wav", 1.0, rate=32000, depth="24"))
    s = w.session
    s.set_strip("vocals", gain_db=-6, pan=-0.5)
    s.set_strip("drums", mute=True)
    dlg = w.export_dialog()
    assert dlg is not None and "24-bit at 32000 Hz" in dlg.depth_note.text()
    dlg.remix_mode.setChecked(True)
    dlg.format.setCurrentText("flac")
    dlg.target.setText(str(tmp_path / "out"))
    dlg.accept()
    wait_until(lambda: s.export_task is None)
    out = tmp_path / "out" / "song-remix.flac"
    info = probe(out)
    assert (info.rate, info.channels, info.sample_format) == (32000, 2, "int24")
    got, _ = read_audio(out)
    assert s.mixer is not None
    s.mixer.settle()  # the 10-ms ramps after the last change are over
    player = Player(s.mixer, block=4096)  # the callback's path, block by block
    player.playing = True
    heard = np.zeros((2, s.frames), np.float32)
    for a in range(0, s.frames, 4096):
        player.fill(heard[:, a : a + 4096])
    np.testing.assert_allclose(got, heard, atol=1 / 2**23)  # only 24-bit rounding apart
    assert np.abs(got[0]).max() > 1.2 * np.abs(got[1]).max()  # panned left
    w.close()


def test_stem_export_for_a_daw_and_no_silent_overwrite(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    w = window(settings, tone_file(tmp_path / "tune.wav", 0.5, rate=44100, depth="16"))
    dlg = w.export_dialog()
    assert dlg is not None
    dlg.picks["other"].setChecked(False)
    dlg.target.setText(str(tmp_path / "daw"))
    plan = dlg.plan()
    assert plan.what == "stems" and plan.stems == ("vocals", "drums", "bass")
    dlg.accept()
    wait_until(lambda: w.session.export_task is None)
    files = sorted(p.name for p in (tmp_path / "daw").iterdir())
    assert files == ["tune-bass.wav", "tune-drums.wav", "tune-vocals.wav"]
    vocals, rate = read_audio(tmp_path / "daw" / "tune-vocals.wav")
    assert rate == 44100 and probe(tmp_path / "daw" / "tune-vocals.wav").sample_format == "int16"
    np.testing.assert_allclose(vocals, w.session.stems["vocals"], atol=1 / 2**15)
    with pytest.raises(StemtokError, match="already exists"):
        w.session.export(plan)
    w.session.export(ExportPlan("stems", "mp3", tmp_path / "daw", ("bass",), overwrite=True))
    assert probe(tmp_path / "daw" / "tune-bass.mp3").rate == 44100
    with pytest.raises(StemtokError, match="at least one stem"):
        w.session.export(ExportPlan("stems", "wav", tmp_path / "daw", ()))
    w.close()


def test_mp3_export_of_six_channels_at_96_khz_is_stereo_48_khz_with_a_notice(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    w = window(settings, tone_file(tmp_path / "six.wav", 0.5, rate=96000, channels=6, depth="24"))
    s = w.session
    messages: list[str] = []
    s.message.connect(messages.append)
    dlg = w.export_dialog()
    assert dlg is not None
    dlg.format.setCurrentText("mp3")
    assert dlg.depth_note.text() == (
        "MP3 V0 at 48000 Hz (downmixed from 6 channels, resampled from 96000 Hz)"
    )
    written, warnings = run_export(
        ExportPlan("stems", "mp3", tmp_path / "daw", ("bass",)),
        "six",
        s.stems,
        s.mixer,
        s.rate,
        s.sample_format,
    )
    info = probe(written[0])
    assert (info.channels, info.rate) == (2, 48000) and abs(info.frames - 24000) <= 1
    assert warnings == [
        "MP3 holds 1-2 channels at 8-48 kHz: 6 channels (5.1) are downmixed to stereo and 96 kHz "
        "is resampled to 48 kHz (WAV and FLAC keep the input as it is)"
    ]
    s.export(ExportPlan("remix", "mp3", tmp_path / "mix.mp3"))
    assert probe(tmp_path / "mix.mp3").rate == 48000 and any("resampled" in m for m in messages)
    w.close()


def test_export_a_format_cannot_hold_is_refused_before_writing(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    w = window(settings, tone_file(tmp_path / "ten.wav", 0.2, rate=44100, channels=10))
    dlg = w.export_dialog()
    assert dlg is not None
    dlg.format.setCurrentText("flac")
    assert "FLAC holds at most 8 channels" in dlg.depth_note.text()
    with pytest.raises(StemtokError, match="FLAC holds at most 8 channels, the input has 10"):
        w.session.export(ExportPlan("stems", "flac", tmp_path / "daw", ("vocals",)))
    assert not (tmp_path / "daw").exists()
    w.close()

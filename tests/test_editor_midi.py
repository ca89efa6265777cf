"""MIDI-learn through injected mido messages (no port): solo, mute and gain per stem and the
transport; bindings persist in QSettings."""

from __future__ import annotations

import itertools
from pathlib import Path

import mido
import pytest
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
from qt_fixtures import FakeSeparator, qapp, settings, tone_file, wait_until

from app.editor.midi import MidiControl, cc_to_db, targets
from app.editor.mixer import MIN_DB
from app.editor.session import Session
from app.editor.window import MainWindow

__all__ = ["qapp", "settings"]


@pytest.fixture
def session(qapp: QApplication, settings: QSettings, tmp_path: Path) -> Session:
    s = Session(lambda: FakeSeparator(), settings)
    s.open_path(tone_file(tmp_path / "m.wav", 0.5))
    wait_until(lambda: s.state == "loaded")
    return s


def test_learn_binds_controls_and_they_drive_the_session(session: Session) -> None:
    midi = MidiControl(session)
    learned: list[tuple[str, str]] = []
    midi.learned.connect(lambda t, k: learned.append((t, k)))
    midi.learn("bass.gain")
    assert midi.handle(mido.Message("control_change", channel=2, control=7, value=0)) == "bass.gain"
    assert learned == [("bass.gain", "cc 2 7")]
    assert session.strips["bass"].gain_db == 0.0  # learning does not act
    midi.handle(mido.Message("control_change", channel=2, control=7, value=100))
    assert session.strips["bass"].gain_db == pytest.approx(0.0)
    midi.handle(mido.Message("control_change", channel=2, control=7, value=50))
    assert session.strips["bass"].gain_db == pytest.approx(MIN_DB / 4)
    midi.learn("vocals.solo")
    midi.handle(mido.Message("note_on", note=36, velocity=90))  # learned, not acted on
    for _ in range(3):
        midi.handle(mido.Message("note_on", note=36, velocity=90))
        midi.handle(mido.Message("note_off", note=36))
    assert session.strips["vocals"].solo  # toggled three times
    midi.learn("drums.mute")
    midi.handle(mido.Message("control_change", control=20, value=127))
    for value in (127, 127, 0, 127, 0):  # a button: 127 pressed, 0 released; repeats ignored
        midi.handle(mido.Message("control_change", control=20, value=value))
    assert not session.strips["drums"].mute  # two presses: on, off
    assert midi.handle(mido.Message("control_change", control=99, value=1)) is None
    assert midi.handle(mido.Message("pitchwheel", pitch=100)) is None


def test_transport_and_relearning(session: Session) -> None:
    midi = MidiControl(session)
    midi.learn("transport.play")
    midi.handle(mido.Message("note_on", note=60, velocity=1))
    assert session.player is not None
    session.player.seek(1000)
    session.player.fill(session.player._buf[:, :10])  # the callback applies the seek
    midi.learn("transport.stop")
    midi.handle(mido.Message("note_on", note=61, velocity=1))
    midi.handle(mido.Message("note_on", note=61, velocity=1))
    assert session.player.now == 0 and not session.player.playing
    midi.learn("transport.play")  # moving a target to another control frees the old one
    midi.handle(mido.Message("note_on", note=62, velocity=1))
    assert {t for t in midi.bindings.values()} == {"transport.play", "transport.stop"}
    assert ("note", 0, 60) not in midi.bindings
    with pytest.raises(ValueError, match="unknown MIDI target"):
        midi.learn("vocals.reverb")


def test_bindings_persist_in_settings(session: Session, settings: QSettings) -> None:
    midi = MidiControl(session, settings)
    for i, target in enumerate(targets()):
        midi.learn(target)
        midi.handle(mido.Message("control_change", channel=i % 16, control=i, value=0))
    settings.sync()
    again = MidiControl(session, QSettings(settings.fileName(), QSettings.Format.IniFormat))
    assert again.bindings == midi.bindings and len(again.bindings) == len(targets()) == 14
    again.forget("other.gain")
    assert "other.gain" not in again.bindings.values()


def test_the_window_menu_learns_from_the_port_signal(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    win = MainWindow(Session(lambda: FakeSeparator(), settings))
    win.session.open_path(tone_file(tmp_path / "w.wav", 0.3))
    wait_until(lambda: win.session.state == "loaded")
    win._learn("other.mute")
    win.midi.incoming.emit(mido.Message("note_on", note=40, velocity=64))  # as the port thread does
    wait_until(lambda: not win.midi.armed)
    win.midi.incoming.emit(mido.Message("note_on", note=40, velocity=64))
    assert win.session.strips["other"].mute and win.editor.strips["other"].mute.isChecked()
    assert "note 0 40 -> other.mute" in win.statusBar().currentMessage()  # type: ignore[union-attr]
    win.close()


def test_cc_curve() -> None:
    assert cc_to_db(0) == MIN_DB and cc_to_db(100) == 0.0 and cc_to_db(127) == pytest.approx(6.0)
    values = [cc_to_db(v) for v in range(128)]
    assert all(b > a for a, b in itertools.pairwise(values))


def test_a_failing_midi_backend_becomes_a_one_line_oserror(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """python-rtmidi without an ALSA sequencer raises its own error type: the editor must get an
    OSError it can show, not an exception that aborts a Qt slot."""

    class BackendError(Exception):
        pass

    def broken() -> list[str]:
        raise BackendError("MidiInAlsa::initialize: error creating ALSA sequencer client object.")

    monkeypatch.setattr(mido, "get_input_names", broken)
    control = MidiControl.__new__(MidiControl)  # no session needed to open a port
    control._port = None
    with pytest.raises(OSError, match="ALSA sequencer"):
        control.open_port()

"""MIDI control with mido: MIDI-learn for solo, mute and gain of each stem and for the transport.

``learn(target)`` arms a target; the next control change or note binds to it. Bindings are keyed
by ``(kind, channel, number)`` and saved in QSettings as JSON. Messages come from a mido input
port (its callback thread posts them to the GUI thread through a queued signal) or are injected
with :meth:`MidiControl.handle`, which is how the tests drive it without a port.
"""

from __future__ import annotations

import json
from typing import Any

from PyQt6.QtCore import QObject, QSettings, pyqtSignal

from app.editor.mixer import MAX_DB, MIN_DB
from app.editor.session import Session
from engine.constants import STEMS

ACTIONS = ("solo", "mute", "gain")
TRANSPORT = ("play", "stop")
Key = tuple[str, int, int]


def targets() -> list[str]:
    """Everything MIDI can drive: ``vocals.solo`` ... ``other.gain``, ``transport.play``, ..."""
    return [f"{s}.{a}" for s in STEMS for a in ACTIONS] + [f"transport.{t}" for t in TRANSPORT]


def key_of(msg: Any) -> tuple[Key, int] | None:
    """``((kind, channel, number), value)`` of a control change or note on; None otherwise."""
    if msg.type == "control_change":
        return ("cc", msg.channel, msg.control), msg.value
    if msg.type == "note_on" and msg.velocity > 0:
        return ("note", msg.channel, msg.note), msg.velocity
    return None


def cc_to_db(value: int) -> float:
    """0..127 -> MIN_DB..+6 dB, with 100 at 0 dB (a fader's usual unity mark)."""
    if value <= 0:
        return MIN_DB
    if value <= 100:
        return MIN_DB * (1 - value / 100) ** 2
    return min(MAX_DB, 6.0 * (value - 100) / 27)


class MidiControl(QObject):
    """MIDI bindings for one :class:`Session`."""

    learned = pyqtSignal(str, str)  # target, "cc 0 7" style description
    incoming = pyqtSignal(object)  # mido messages from the port thread, handled on the GUI thread

    def __init__(self, session: Session, settings: QSettings | None = None) -> None:
        super().__init__()
        self.session = session
        self.settings = settings or session.settings
        self.bindings: dict[Key, str] = {}
        self.armed: str | None = None
        self._port: Any = None
        self._held: set[Key] = set()
        self.incoming.connect(self.handle)
        self.load()

    def learn(self, target: str | None) -> None:
        """Bind the next message to ``target`` (None: stop learning)."""
        if target is not None and target not in targets():
            raise ValueError(f"unknown MIDI target {target!r}")
        self.armed = target

    def forget(self, target: str) -> None:
        self.bindings = {k: t for k, t in self.bindings.items() if t != target}
        self.save()

    def handle(self, msg: Any) -> str | None:
        """Learn or act on one mido message; returns the target it drove (or learned)."""
        got = key_of(msg)
        if got is None:
            if msg.type in ("note_off", "note_on"):  # note off (or velocity 0): release
                self._held.discard(("note", msg.channel, msg.note))
            return None
        key, value = got
        if self.armed is not None:
            learned, self.armed = self.armed, None
            self.bindings = {k: t for k, t in self.bindings.items() if t != learned}
            self.bindings[key] = learned
            self.save()
            self.learned.emit(learned, " ".join(map(str, key)))
            return learned
        target = self.bindings.get(key)
        if target is not None:
            self._act(target, key, value)
        return target

    def _act(self, target: str, key: Key, value: int) -> None:
        owner, action = target.split(".")
        if action == "gain":
            self.session.set_strip(owner, gain_db=cc_to_db(value))
            return
        pressed = value >= 64 if key[0] == "cc" else True
        was = key in self._held
        self._held.discard(key)
        if pressed:
            self._held.add(key)
        if not pressed or (was and key[0] == "cc"):  # a button: act once per press
            return
        if owner == "transport":
            (self.session.toggle_play if action == "play" else self.session.stop)()
        else:
            self.session.toggle(owner, action)

    # ------------------------------------------------------------ settings and ports
    def save(self) -> None:
        data = [[*k, t] for k, t in self.bindings.items()]
        self.settings.setValue("midi/bindings", json.dumps(data))

    def load(self) -> None:
        raw = self.settings.value("midi/bindings", "[]")
        try:
            rows = json.loads(str(raw))
            self.bindings = {(str(k), int(c), int(n)): str(t) for k, c, n, t in rows}
        except (ValueError, TypeError):
            self.bindings = {}

    def open_port(self, name: str | None = None) -> str:
        """Listen to input port ``name`` (default: the first); returns its name."""
        import mido

        try:  # the backend (python-rtmidi) raises its own errors, e.g. without an ALSA sequencer
            names = mido.get_input_names()
            if not names:
                raise OSError("no MIDI input ports")
            self.close_port()
            self._port = mido.open_input(name or names[0], callback=self.incoming.emit)
        except (OSError, ImportError):
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OSError(first) from None
        return str(self._port.name)

    def close_port(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

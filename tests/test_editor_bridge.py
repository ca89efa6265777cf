"""The editor as the DAW bridge's front (offscreen): regions sent with the bridge client show up
in the window already separated, one engine serves both, the menu and window close stop the
server, a busy port is one line in the status bar. The engine is
:class:`app.bridge.testing.FractionEngine` (stems are exact fractions of the region)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
from qt_fixtures import qapp, settings, tone_file, wait_until

from app.bridge import paths
from app.bridge.client import BridgeClient, BridgeError
from app.bridge.connection import Timeouts
from app.bridge.server import BridgeConfig
from app.bridge.testing import FractionEngine, expected
from app.cli import main
from app.editor.bridge_front import BridgeFront, Region, regions_dir
from app.editor.session import Session
from app.editor.shared_engine import SharedEngine
from app.editor.window import MainWindow
from engine.constants import STEMS

__all__ = ["qapp", "settings"]  # fixtures
FAST = Timeouts(hello=2.0, idle=5.0, frame=2.0, write=2.0, flush=1.0)


class Engine(FractionEngine):
    """FractionEngine that also takes the editor's ``confidence`` option and records how many
    separations ran at the same time."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay, steps=5)
        self.active = self.most = 0
        self._count = threading.Lock()

    def separate(self, audio: Any, rate: int, *, confidence: bool = False, **kw: Any) -> Any:
        with self._count:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            return super().separate(audio, rate, **kw)
        finally:
            with self._count:
                self.active -= 1


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "run").mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def engine() -> Engine:
    return Engine()


def make_window(engine: Engine, settings: QSettings) -> MainWindow:
    """The window as ``stemtok editor`` builds it: one SharedEngine for session and bridge."""
    shared = SharedEngine(lambda: engine)
    w = MainWindow(Session(lambda: shared, settings))
    w.front = BridgeFront(w, shared, config, grace=1.0)  # type: ignore[attr-defined]
    w.show()
    return w


@pytest.fixture
def win(qapp: QApplication, settings: QSettings, engine: Engine) -> Iterator[MainWindow]:
    w = make_window(engine, settings)
    yield w
    w.close()


def config(**changes: Any) -> BridgeConfig:
    base: dict[str, Any] = {
        "port": 0,
        "socket_path": paths.default_socket_path(),
        "state_file": paths.state_path(),
        "timeouts": FAST,
    }
    return BridgeConfig(**{**base, **changes})


def front_of(win: MainWindow) -> BridgeFront:
    front = win.front  # type: ignore[attr-defined]
    assert isinstance(front, BridgeFront)
    return front


def region(seconds: float, rate: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((2, int(seconds * rate)))).astype(np.float32)


def in_thread(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` on a thread (the GUI thread keeps processing events); its result lands in
    ``out["value"]`` (or ``out["error"]``)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:
            out["error"] = exc

    threading.Thread(target=run, daemon=True).start()
    return out


def send(port: int, audio: np.ndarray, rate: int = 8000) -> dict[str, Any]:
    return in_thread(lambda: BridgeClient(port=port, timeout=20).separate(audio, rate))


def send_named(audio: np.ndarray, client: str, rate: int = 8000) -> dict[str, Any]:
    """A ``separate`` with the optional ``client`` member, over the default Unix socket."""

    def go() -> Any:
        with BridgeClient(paths.default_socket_path(), timeout=20) as c:
            pcm = np.ascontiguousarray(audio.T, "<f4").tobytes()
            c.send(
                {
                    "type": "separate",
                    "id": "take-7",
                    "sample_rate": rate,
                    "channels": 2,
                    "frames": audio.shape[1],
                    "format": "f32le",
                    "client": client,
                },
                pcm,
            )
            return c.wait("take-7")

    return in_thread(go)


def done(out: dict[str, Any]) -> bool:
    if "error" in out:
        raise out["error"]
    return "value" in out


def menu_texts(front: BridgeFront) -> list[str]:
    return [a.text() for a in front.menu.actions() if a.text()]


def status(win: MainWindow) -> str:
    bar = win.statusBar()
    assert bar is not None
    return bar.currentMessage()


def test_regions_from_a_daw_open_in_the_lanes_already_separated(
    win: MainWindow, engine: Engine, tmp_path: Path
) -> None:
    front = front_of(win)
    assert menu_texts(front)[0].startswith("(none yet")
    said: list[str] = []
    bar = win.statusBar()
    assert bar is not None
    bar.messageChanged.connect(said.append)
    front.action.trigger()  # File > Serve DAW Bridge
    assert front.action.isChecked() and front.server is not None
    port = front.server.port
    assert port and f"127.0.0.1:{port}" in front.label.text() and front.label.isVisibleTo(win)
    assert f"127.0.0.1:{port}" in status(win)
    a = region(1.0)
    out = send(port, a)
    wait_until(lambda: done(out) and win.session.state == "loaded")
    for name in STEMS:  # the client got its stems, and the window shows the same ones
        np.testing.assert_array_equal(out["value"][name], expected(a, name))
        np.testing.assert_array_equal(win.session.stems[name], expected(a, name))
    np.testing.assert_array_equal(win.session.mixture, a)
    assert len(engine.calls) == 1  # no second separation for the editor
    canvas = win.editor.canvas
    assert [ln.name for ln in canvas.lanes] == ["mix", *STEMS] and canvas.frames == 8000
    texts = menu_texts(front)
    assert f"pid {os.getpid()}: 1.0 s, 2 ch, 8 kHz" in texts[0]
    assert f"region from pid {os.getpid()} arrived (1.0 s): opening it" in said
    assert status(win) == f"region from pid {os.getpid()}: 1.0 s, separated by the bridge"
    source = win.session.source
    assert source is not None and source.parent == regions_dir()
    assert regions_dir() == tmp_path / "data" / "stemtok" / "daw-regions"
    assert source.name in win.windowTitle() or source.stem in win.windowTitle()

    b = region(0.5, seed=1)  # a second region replaces the first DAW region in the lanes
    out2 = send_named(b, "REAPER 7")
    wait_until(lambda: done(out2) and win.session.frames == 4000)
    assert (
        out2["value"].stems["vocals"]
        == np.ascontiguousarray(expected(b, "vocals").T, "<f4").tobytes()
    )
    np.testing.assert_array_equal(win.session.stems["bass"], expected(b, "bass"))
    texts = menu_texts(front)
    assert texts[0].split("  ", 1)[1].startswith("REAPER 7: 0.5 s")  # newest first
    assert "pid" in texts[1] and texts[-1] == "Clear list"
    assert [r.id for r in front.regions] == ["take-7", front.regions[1].id]

    win.editor.canvas.selection = (0.1, 0.3)  # re-roll works on a region like on a song
    win.reroll()
    wait_until(lambda: win.session.take is not None)
    assert engine.calls[-1].seed is not None and engine.calls[-1].shape == (2, 4000)

    win.close()  # closing the window stops the server and removes its files
    assert front.server is None and not front.action.isChecked()
    with pytest.raises(BridgeError):
        BridgeClient(port=port, timeout=2)
    assert not paths.default_socket_path().exists() and not paths.state_path().exists()


def test_a_region_waits_in_the_menu_while_a_song_is_loaded(win: MainWindow, tmp_path: Path) -> None:
    front = front_of(win)
    assert front.start()
    win.session.open_path(tone_file(tmp_path / "song.wav", 0.5, rate=8000))
    wait_until(lambda: win.session.state == "loaded")
    a = region(0.25)
    out = in_thread(lambda: BridgeClient(timeout=20).separate(a, 8000))  # finds it by state
    wait_until(lambda: done(out) and bool(front.regions))
    assert win.session.source == tmp_path / "song.wav"  # the user's song stays
    assert "open it from File > Regions from DAW" in status(win)
    front.menu.actions()[0].trigger()  # open it from the menu
    wait_until(lambda: win.session.frames == 2000)
    np.testing.assert_array_equal(win.session.stems["drums"], expected(a, "drums"))
    assert isinstance(front.shown, Region) and front.shown is front.regions[0]
    first = win.session.source
    assert first is not None and first.name.startswith("daw-") and first.is_file()
    win.session.open_path(tmp_path / "song.wav")  # back to the song, then the region again
    wait_until(lambda: win.session.source == tmp_path / "song.wav")
    front.menu.actions()[0].trigger()
    wait_until(lambda: win.session.source == first)
    assert sorted(regions_dir().iterdir()) == [first]  # its audio is written once


def test_one_engine_runs_one_separation_at_a_time(
    qapp: QApplication, settings: QSettings, tmp_path: Path
) -> None:
    engine = Engine(delay=0.3)
    win = make_window(engine, settings)
    front = front_of(win)
    assert front.start() and front.server is not None
    win.session.open_path(tone_file(tmp_path / "song.wav", 0.5, rate=8000))
    a = region(0.25)
    out = send(front.server.port or 0, a)
    wait_until(lambda: done(out) and win.session.state == "loaded" and bool(front.regions), 20)
    assert len(engine.calls) == 2 and engine.most == 1
    np.testing.assert_array_equal(out["value"]["other"], expected(a, "other"))
    win.close()
    assert front.server is None


def test_the_menu_stops_the_bridge_and_a_busy_port_is_one_line(win: MainWindow) -> None:
    front = front_of(win)
    assert front.start() and front.server is not None
    port = front.server.port
    front.action.trigger()  # uncheck: stops on a helper thread, the window stays responsive
    wait_until(lambda: front.label.text() == "DAW bridge off", 10)
    assert "stopped" in status(win) and front.server is None
    with pytest.raises(BridgeError):
        BridgeClient(port=port, timeout=2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        front.config = lambda: config(port=taken.getsockname()[1])
        t0 = time.monotonic()
        front.action.trigger()
        assert time.monotonic() - t0 < 5
    assert not front.action.isChecked() and front.server is None
    msg = status(win)
    assert msg.startswith("DAW bridge not started: port ") and "in use" in msg
    assert "\n" not in msg and front.label.text() == "DAW bridge off (not started)"


def test_cli_refuses_bad_bridge_options_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["editor", "--bridge", "--port", "70000"]) == 2
    assert "--port 70000: use 0-65535" in capsys.readouterr().err
    assert main(["editor", "--bridge", "--no-tcp", "--no-socket"]) == 2
    assert "leave nothing to listen on" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["editor", "--help"])
    assert "--bridge" in capsys.readouterr().out

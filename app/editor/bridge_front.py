"""The editor as the DAW bridge's front: serve the bridge from the editor process and show every
region a DAW sends, already separated.

::

    DAW ─ bridge (own thread, asyncio) ─ worker thread: FrontEngine ─ SharedEngine ─┐
                                              │ on_result: copy arrays           editor jobs
                                              ▼
                         BridgeFront._arrived (Qt signal, queued) ─ GUI thread:
                         "Regions from DAW" menu, status bar, open as a session (no re-separation)

Nothing here touches a widget from the bridge's threads: ``on_result`` only copies the region
and emits a queued signal. A region opens by itself when the window is empty or shows an earlier
DAW region; otherwise it waits in File > Regions from DAW. Opening writes the region's audio as a
float WAV under :func:`regions_dir`, so Save Project, Export and re-roll work as for a song.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import QLabel, QMenu

from app.editor.session import Song
from app.editor.shared_engine import FrontEngine, SharedEngine
from app.editor.worker import Task
from engine.audio import write_audio
from engine.constants import STEMS
from engine.errors import StemtokError

if TYPE_CHECKING:
    from app.bridge.server import BridgeConfig, BridgeServer
    from app.editor.window import MainWindow

MAX_REGIONS = 16  # kept in the menu (newest first) ...
MAX_BYTES = 2 * 2**30  # ... while their audio takes less than this (the newest always stays)


def regions_dir() -> Path:
    """``$XDG_DATA_HOME/stemtok/daw-regions`` (default ``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stemtok" / "daw-regions"


@dataclass(frozen=True)
class Region:
    """One region received from a DAW: ``mixture`` ``[C, N]``, ``bank`` ``[4, C, N]`` in STEMS
    order (stems the client did not ask for in generative mode are silent)."""

    id: str
    client: str
    received: float  # time.time()
    rate: int
    mixture: np.ndarray
    bank: np.ndarray
    requested: tuple[str, ...]
    mode: str
    seed: int | None

    @property
    def seconds(self) -> float:
        return self.mixture.shape[1] / self.rate

    @property
    def nbytes(self) -> int:
        return int(self.mixture.nbytes + self.bank.nbytes)

    @property
    def name(self) -> str:
        """A file-name-safe song name: ``daw-<date>-<time>-<client>``."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.received))
        return _safe(f"daw-{stamp}-{self.client}")

    def label(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.received))
        only = "" if len(self.requested) == len(STEMS) else f", {'+'.join(self.requested)} only"
        return (
            f"{clock}  {self.client}: {self.seconds:.1f} s, {self.mixture.shape[0]} ch, "
            f"{self.rate / 1000:g} kHz{only}"
        )


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:120] or "region"


def client_name(header: Mapping[str, Any]) -> str:
    """Who sent a ``separate`` header: its optional ``client`` member (the bridge ignores it),
    else the process id that :class:`app.bridge.client.BridgeClient` puts in its ids."""
    given = header.get("client")
    if isinstance(given, str) and given.strip():
        return given.strip()[:40]
    m = re.fullmatch(r"r(\d+)-\d+", str(header.get("id", "")))
    return f"pid {m.group(1)}" if m else "DAW"


def make_region(
    header: Mapping[str, Any],
    rate: int,
    audio: np.ndarray | None,
    stems: Mapping[str, np.ndarray],
) -> Region:
    """A :class:`Region` holding copies of ``audio`` ``[C, N]`` and ``stems`` (any thread)."""
    first = next(iter(stems.values()))
    zero = np.zeros_like(first, dtype=np.float32)
    bank = np.stack([np.asarray(stems.get(n, zero), np.float32) for n in STEMS])  # a copy
    if audio is None:  # not expected: the stems still add up to it in aligned mode
        audio = bank.sum(axis=0)
    req = tuple(n for n in STEMS if n in (header.get("stems") or STEMS))
    seed = header.get("seed")
    return Region(
        str(header.get("id")),
        client_name(header),
        time.time(),
        int(rate),
        np.array(audio, np.float32, copy=True),
        bank,
        req,
        str(header.get("mode", "aligned")),
        seed if isinstance(seed, int) else None,
    )


class BridgeFront(QObject):
    """Runs a :class:`~app.bridge.server.BridgeServer` for ``window`` and lists its regions.

    ``config()`` builds the server's config at each start (the ``stemtok bridge`` options);
    ``engine`` must be the one the window's session separates with.
    """

    _arrived = pyqtSignal(object)  # Region, emitted on the bridge's worker thread
    _stopped = pyqtSignal()  # a background stop finished
    serving = pyqtSignal(bool)

    def __init__(
        self,
        window: MainWindow,
        engine: SharedEngine,
        config: Callable[[], BridgeConfig],
        grace: float = 5.0,
    ) -> None:
        super().__init__(window)
        self.window, self.shared, self.config, self.grace = window, engine, config, grace
        self.front = FrontEngine(engine)
        self.server: BridgeServer | None = None
        self.regions: list[Region] = []  # newest first
        self.shown: Region | None = None  # the region in the lanes
        self._opening: Task | None = None
        self._stopper: threading.Thread | None = None
        self._shown_source: Path | None = None  # the WAV of the region in the lanes
        self._written: dict[int, Path] = {}  # id() of a listed region -> its WAV
        queued = Qt.ConnectionType.QueuedConnection  # (PyQt6's stubs lack connect's `type`)
        self._arrived.connect(self._add, type=queued)  # type: ignore[call-arg]
        self._stopped.connect(self._after_stop, type=queued)  # type: ignore[call-arg]
        self._build_ui()
        # stop before the window waits for its own jobs; a signal, not an event filter: a filter
        # on the parent can be called while the window is being destroyed
        window.closing.connect(self.stop)

    # ------------------------------------------------------------------ widgets
    def _build_ui(self) -> None:
        w = self.window
        self.action = QAction("Serve DAW &Bridge", w)
        self.action.setCheckable(True)
        self.action.toggled.connect(self._toggled)
        self.menu = QMenu("Regions from &DAW", w)
        file = _file_menu(w)
        quit_ = next((a for a in file.actions() if a.text() == "&Quit"), None)
        file.insertSeparator(quit_)  # type: ignore[arg-type]
        file.insertAction(quit_, self.action)  # type: ignore[arg-type]
        file.insertMenu(quit_, self.menu)  # type: ignore[arg-type]
        file.insertSeparator(quit_)  # type: ignore[arg-type]
        self.label = QLabel("DAW bridge off")  # in the status bar from the first start on
        self._fill_menu()

    def _fill_menu(self) -> None:
        self.menu.clear()
        if not self.regions:
            empty = self.menu.addAction("(none yet: send a region from your DAW)")
            assert empty is not None
            empty.setEnabled(False)
        for r in self.regions:
            a = self.menu.addAction(r.label())
            assert a is not None
            a.triggered.connect(lambda _=False, r=r: self.open_region(r))
        if self.regions:
            self.menu.addSeparator()
            clear = self.menu.addAction("Clear list")
            assert clear is not None
            clear.triggered.connect(self.clear)

    def _say(self, text: str) -> None:
        bar = self.window.statusBar()
        if bar is not None:
            bar.showMessage(text, 8000)

    def _show_off(self, why: str = "") -> None:
        self.label.setText("DAW bridge off" + (f" ({why})" if why else ""))
        self.action.blockSignals(True)
        self.action.setChecked(False)
        self.action.blockSignals(False)

    # ------------------------------------------------------------------ serving
    @property
    def running(self) -> bool:
        return self.server is not None

    def _toggled(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.stop(wait=False)

    def start(self) -> bool:
        """Start serving; a failure (port in use, bad token file) is one line in the window."""
        if self.server is not None:
            return True
        if self._stopper is not None:
            self._stopper.join()
        from app.bridge.server import BridgeServer

        bar = self.window.statusBar()
        if bar is not None and self.label.parent() is None:
            bar.addPermanentWidget(self.label)
            bar.show()  # made after the window was shown: not visible by itself
        try:
            server = BridgeServer(self.front, self.config(), on_result=self._on_result)
            server.start()
        except (StemtokError, OSError) as exc:
            self._show_off("not started")
            self._say(f"DAW bridge not started: {exc}")
            return False
        self.server = server
        self.action.blockSignals(True)
        self.action.setChecked(True)
        self.action.blockSignals(False)
        tcp = f"127.0.0.1:{server.port}" if server.port is not None else ""
        sock = "socket" if server.socket_path is not None else ""
        self.label.setText("DAW bridge on " + " + ".join(x for x in (tcp, sock) if x))
        self.label.setToolTip(f"serving on {server.where()}")
        self._say(f"DAW bridge serving on {server.where()}")
        self._preload()
        self.serving.emit(True)
        return True

    def _preload(self) -> None:
        """Load the model now, so the DAW's first region does not wait for it."""
        if not self.shared.loaded:
            task = Task(lambda progress, cancel: self.shared.load())
            task.failed.connect(lambda m: self._say(f"DAW bridge: the model did not load: {m}"))
            task.start()

    def stop(self, wait: bool = True) -> None:
        """Stop serving gracefully: queued jobs are refused, the running one gets ``grace``
        seconds. ``wait=False`` stops on a helper thread (the window stays responsive)."""
        server, self.server = self.server, None
        if server is None:
            if wait and self._stopper is not None:
                self._stopper.join()
            return
        self._show_off()
        self.label.setText("DAW bridge stopping ...")
        if wait:
            server.stop(self.grace)
            self._after_stop()
            return
        self._stopper = threading.Thread(
            target=self._stop_in_background, args=(server,), name="stemtok-bridge-stop", daemon=True
        )
        self._stopper.start()

    def _stop_in_background(self, server: BridgeServer) -> None:
        server.stop(self.grace)
        with contextlib.suppress(RuntimeError):  # the window is gone
            self._stopped.emit()

    def _after_stop(self) -> None:
        self._stopper = None
        if self.server is None:
            self._show_off()
            self._say("DAW bridge stopped")
            self.serving.emit(False)

    # ------------------------------------------------------------------ regions
    def _on_result(
        self, header: dict[str, Any], stems: Mapping[str, np.ndarray], rate: int
    ) -> None:
        """Bridge worker thread: copy the region and hand it to the GUI thread."""
        got = self.front.take(int(header.get("channels", 0)), int(header.get("frames", 0)))
        audio, full = got if got is not None else (None, dict(stems))
        region = make_region(header, rate, audio, full)
        with contextlib.suppress(RuntimeError):  # the window is gone
            self._arrived.emit(region)

    def _add(self, region: Region) -> None:
        self.regions.insert(0, region)
        keep: list[Region] = []
        total = 0
        for r in self.regions:
            total += r.nbytes
            if not keep or (len(keep) < MAX_REGIONS and total <= MAX_BYTES):
                keep.append(r)
        self.regions = keep
        alive = {id(r) for r in keep}
        self._written = {k: v for k, v in self._written.items() if k in alive}
        self._fill_menu()
        news = f"region from {region.client} arrived ({region.seconds:.1f} s)"
        if self._may_replace():
            self._say(f"{news}: opening it")
            self.open_region(region)
        else:
            self._say(f"{news}: open it from File > Regions from DAW")

    def _may_replace(self) -> bool:
        """Open a new region by itself only over nothing or over an untouched DAW region."""
        s = self.window.session
        if s.task is not None or s.take is not None:
            return False
        shown = self.shown is not None and s.source == self._shown_source
        return s.state == "empty" or (s.state == "loaded" and shown)

    def clear(self) -> None:
        self.regions, self._written = [], {}
        self._fill_menu()

    def open_region(self, region: Region) -> Task | None:
        """Show ``region`` in the lanes as a session, with the stems it came with."""
        s = self.window.session
        if s.task is not None:
            self._say("a separation is running: open the region when it is done")
            return None

        known = self._written.get(id(region))

        def job(progress: Callable[[float], None], cancel: Callable[[], bool]) -> Any:
            path = known or _write_region(region)
            return path, Song.make(region.mixture, region.bank, region.rate, "float32", {}, 0.0)

        task = self._opening = Task(job)
        task.done.connect(lambda result: self._opened(task, region, *result))
        task.failed.connect(lambda m: self._say(f"cannot open the region: {m}"))
        return task.start()

    def _opened(self, task: Task, region: Region, path: Path | None, song: Song) -> None:
        s = self.window.session
        if task is not self._opening or s.task is not None:
            return  # a newer region, or the user started a separation meanwhile
        self._opening = None
        if path is not None and any(r is region for r in self.regions):
            self._written[id(region)] = path
        s.adopt_song(song, path)
        self.shown, self._shown_source = region, path
        s.message.emit(
            f"region from {region.client}: {region.seconds:.1f} s, separated by the bridge"
        )


def _write_region(region: Region) -> Path | None:
    """The region's audio as a float WAV in :func:`regions_dir` (None if it cannot be written)."""
    folder = regions_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path, n = folder / f"{region.name}.wav", 1
        while path.exists():  # two regions in one second: -2, -3, ...
            n += 1
            path = folder / f"{region.name}-{n}.wav"
        return write_audio(path, region.mixture, region.rate, bit_depth="32f")
    except (OSError, StemtokError):
        return None


def _file_menu(window: MainWindow) -> QMenu:
    bar = window.menuBar()
    assert bar is not None
    for a in bar.actions():
        if a.text() == "&File" and a.menu() is not None:
            return a.menu()  # type: ignore[return-value]
    raise RuntimeError("the window has no File menu")

"""``stemtok editor [FILE]``: the stem editor window (PyQt6); ``--screenshot PNG`` renders it
offscreen after loading FILE and exits; ``--bridge`` also serves the DAW bridge from the window
(see ``docs/editor/README.md``)."""

from __future__ import annotations

import argparse
import ctypes.util
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import StemtokError

EXAMPLES = """\
Examples:
  stemtok editor                       an empty window: drop a song on it
  stemtok editor song.flac             separate song.flac and show its stems
  stemtok editor song.stemtok          reopen a saved project (no separation)
  stemtok editor song.flac --screenshot shot.png --solo vocals
  stemtok editor --bridge              also serve the DAW bridge; regions sent show up here
  stemtok editor --bridge --port 0 --no-socket   the bridge on a free TCP port only
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "editor",
        help="open the stem editor",
        description="Open the stem editor: drop a song to split it into vocals, drums, bass and "
        "other; solo, mute, pan and level each stem, play, export stems or a remix, re-roll a "
        "region, and drop songs on the karaoke target for instrumentals.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", type=Path, metavar="FILE", help="a song or .stemtok project")
    p.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="render the window offscreen after loading FILE, save it and exit",
    )
    p.add_argument("--model", metavar="NAME_OR_DIR", help="as for 'stemtok separate'")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    p.add_argument("--mode", default="aligned", choices=("aligned", "generative"))
    _bridge_options(p)
    shot = p.add_argument_group("screenshot state (with --screenshot)")
    shot.add_argument("--solo", action="append", default=[], metavar="STEM")
    shot.add_argument("--mute", action="append", default=[], metavar="STEM")
    shot.add_argument("--select", metavar="A-B", help="select seconds A to B")
    shot.add_argument("--spectrogram", action="store_true", help="show spectrograms")
    shot.add_argument(
        "--taller", type=float, default=1.0, metavar="X", help="waveforms X times taller"
    )
    shot.add_argument(
        "--at-progress",
        type=float,
        metavar="F",
        help="capture while separating, once F (0-1) is done, then cancel",
    )
    shot.add_argument(
        "--karaoke",
        action="append",
        default=[],
        type=Path,
        metavar="SONG",
        help="drop SONG on the karaoke target and capture when it is written",
    )
    shot.add_argument("--size", default="1280x760", metavar="WxH")
    p.set_defaults(func=run)


def _bridge_options(p: argparse.ArgumentParser) -> None:
    """The options of ``stemtok bridge`` that apply when the editor serves it."""
    from app.commands.bridge import add_listener_args

    b = p.add_argument_group("DAW bridge (File > Serve DAW Bridge; see 'stemtok bridge')")
    b.add_argument(
        "--bridge",
        action="store_true",
        help="serve the DAW bridge from this window: regions sent show up here",
    )
    add_listener_args(b)


def _wait(app: Any, done: Callable[[], bool], timeout: float = 900.0) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise StemtokError("timed out waiting for the editor")
        app.processEvents()
        time.sleep(0.01)


def _report(win: Any) -> Callable[..., None]:
    """An excepthook that shows an unexpected error in the status bar instead of aborting Qt."""

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        traceback.print_exception(kind, exc, tb)
        win.statusBar().showMessage(f"internal error: {kind.__name__}: {exc}", 15000)

    return hook


def display_problem(
    env: Mapping[str, str],
    platform: str = sys.platform,
    find_library: Callable[[str], str | None] = ctypes.util.find_library,
) -> str | None:
    """Why Qt could not open a window here (None: it should): on Linux and the BSDs a window
    needs ``DISPLAY`` (an X server, whose local socket must exist) or ``WAYLAND_DISPLAY``, unless
    ``QT_QPA_PLATFORM`` names a platform plugin; Qt's X11 plugin also needs libxcb-cursor.
    Without them Qt aborts the process."""
    if not platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa and not qpa.startswith("xcb"):  # offscreen, wayland, vnc, ...
        return None
    if not qpa and env.get("WAYLAND_DISPLAY"):
        return None
    display = env.get("DISPLAY", "")
    if not display:
        return "none found: DISPLAY and WAYLAND_DISPLAY are not set"
    local = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
    if local and not Path(f"/tmp/.X11-unix/X{local.group(1)}").exists():
        return f"DISPLAY is {display}, but no X server listens there"
    if find_library("xcb-cursor") is None:
        return (
            f"DISPLAY is {display}, but Qt's X11 plugin needs libxcb-cursor, not installed "
            "here: on Debian or Ubuntu, sudo apt-get install libxcb-cursor0"
        )
    return None


def run(args: argparse.Namespace) -> int:
    if args.screenshot is not None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    problem = display_problem(os.environ, sys.platform)
    if problem:
        raise StemtokError(
            f"the editor needs a display ({problem}); for screenshots without one "
            "use --screenshot PNG, or set QT_QPA_PLATFORM=offscreen"
        )
    if args.file is not None and not args.file.exists():
        raise StemtokError(f"{args.file}: no such file")
    try:
        from PyQt6.QtCore import QSettings
        from PyQt6.QtWidgets import QApplication
    except ImportError as exc:
        raise StemtokError(f"the editor needs PyQt6 ({exc}): pip install PyQt6") from None
    from app.commands.bridge import bridge_config
    from app.commands.separate import load_separator
    from app.editor.bridge_front import BridgeFront
    from app.editor.session import Session
    from app.editor.shared_engine import SharedEngine
    from app.editor.window import MainWindow

    if args.bridge:
        bridge_config(args)  # a bad option fails here, in one line, before the window opens

    app = QApplication.instance() or QApplication(["stemtok"])
    settings = None
    if args.screenshot is not None:  # leave the user's settings alone
        ini = Path(tempfile.mkdtemp(prefix="stemtok-shot-")) / "settings.ini"
        settings = QSettings(str(ini), QSettings.Format.IniFormat)
    engine = SharedEngine(lambda: load_separator(args))  # one model: editor and bridge
    session = Session(lambda: engine, settings, mode=args.mode)
    win = MainWindow(session)
    front = BridgeFront(win, engine, lambda: bridge_config(args), grace=args.grace)
    if args.screenshot is not None:
        w, h = (int(v) for v in args.size.lower().split("x"))
        win.resize(w, h)
    win.show()
    if args.bridge:
        front.start()
    if args.file is not None:
        session.open_path(args.file)
    if args.screenshot is None:
        sys.excepthook = _report(win)
        return int(app.exec())
    return _screenshot(app, win, args)


def _screenshot(app: Any, win: Any, args: argparse.Namespace) -> int:
    s = win.session
    if args.at_progress is not None and s.task is not None:
        _wait(app, lambda: s.task is None or s.task.fraction >= args.at_progress)
        time.sleep(1.2)  # let the time-left estimate settle
        app.processEvents()
    elif args.file is not None:
        _wait(app, lambda: s.task is None)
        if s.state != "loaded":
            raise StemtokError(f"{args.file}: could not be loaded")
    for name in args.solo:
        s.set_strip(name, solo=True)
    for name in args.mute:
        s.set_strip(name, mute=True)
    if args.select:
        a, b = (float(v) for v in args.select.split("-"))
        win.editor.canvas.selection = (a, b)
    if args.spectrogram:
        win.spectro.setChecked(True)
        _wait(app, lambda: win.spectro_task is None)
    win.editor.canvas.v_zoom = max(1.0, args.taller)
    if args.karaoke:  # capture the last song half done (or the only one when written)
        q, n = win.karaoke, len(args.karaoke)
        q.add(args.karaoke)
        last = (
            (lambda: q.task is None)
            if n == 1
            else (lambda: q.task is None or q.task.fraction > 0.5)
        )
        _wait(app, lambda: len(q.done) >= n - 1 and last())
    for _ in range(5):
        app.processEvents()
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    if not win.grab().save(str(args.screenshot)):
        raise StemtokError(f"{args.screenshot}: could not write the screenshot")
    win.close()  # cancels what still runs and waits for it
    print(args.screenshot)
    return 0

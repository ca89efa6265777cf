"""``stemtok editor``: the one editor test with the real shipped model (a 2-s song), rendered
offscreen with ``--screenshot``; and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QSettings
from PyQt6.QtGui import QColor, QImage
from PyQt6.QtWidgets import QApplication
from qt_fixtures import qapp, wait_until

from app.cli import main
from app.editor.lanes import COLORS
from app.editor.session import Session
from engine.audio import read_audio, write_audio
from engine.runtime.lm_separator import LMSeparator
from engine.runtime.model import default_model_dir

__all__ = ["qapp"]
DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo" / "demo.flac"


def colour_share(img: QImage, name: str) -> float:
    """Share of pixels within a small distance of lane colour ``name``."""
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    ptr = img.constBits()
    assert ptr is not None
    ptr.setsize(img.sizeInBytes())
    raw = np.frombuffer(ptr.asstring(), np.uint8)
    a = raw.reshape(img.height(), img.bytesPerLine() // 4, 4)[..., :3]
    c = QColor(COLORS[name])
    want = np.array([c.blue(), c.green(), c.red()])
    return float(np.mean(np.abs(a.astype(int) - want).sum(-1) < 30))


@pytest.mark.skipif(not (default_model_dir() / "lm.onnx").is_file(), reason="no shipped model")
def test_screenshot_with_the_real_model(qapp: QApplication, tmp_path: Path) -> None:
    audio, rate = read_audio(DEMO)
    song = write_audio(tmp_path / "two.wav", audio[:, 3 * rate : 5 * rate], rate, bit_depth=16)
    png = tmp_path / "shot.png"
    code = main(
        [
            "editor",
            str(song),
            "--screenshot",
            str(png),
            "--threads",
            "2",
            "--mute",
            "drums",
            "--size",
            "1100x700",
        ]
    )
    assert code == 0
    img = QImage(str(png))
    assert (img.width(), img.height()) == (1100, 700)
    assert colour_share(img, "vocals") > 0.001  # a drawn vocal waveform
    assert colour_share(img, "bass") > 0.001
    assert colour_share(img, "drums") < colour_share(img, "bass")  # muted: drawn dimmed
    # Cancel reaches the real LMSeparator through its cancel callback
    session = Session(
        lambda: LMSeparator(threads=2),
        QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
    )
    messages: list[str] = []
    session.message.connect(messages.append)
    session.open_path(song)
    wait_until(lambda: session.task is not None and 0 < session.task.fraction < 0.5, 60)
    session.cancel()
    wait_until(lambda: session.task is None, 30)
    assert session.state == "empty" and messages[-1] == "separation cancelled"


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["editor", str(tmp_path / "none.wav"), "--screenshot", "x.png"]) == 2
    assert "none.wav: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["editor", "--help"])
    assert exit_.value.code == 0
    assert "--screenshot" in capsys.readouterr().out


def test_no_display_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a display Qt would abort the process (exit 134); the editor says why instead."""
    import app.commands.editor as editor

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(editor.sys, "platform", "linux")
    assert main(["editor"]) == 2
    assert capsys.readouterr().err == (
        "stemtok: error: the editor needs a display (none found: DISPLAY and WAYLAND_DISPLAY are "
        "not set); for screenshots without one use --screenshot PNG, or set "
        "QT_QPA_PLATFORM=offscreen\n"
    )
    monkeypatch.setenv("DISPLAY", ":4711")  # no X server there
    assert main(["editor"]) == 2
    assert "DISPLAY is :4711, but no X server listens there" in capsys.readouterr().err
    assert editor.display_problem({}, "darwin") is None  # macOS and Windows need no DISPLAY
    assert editor.display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert editor.display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None


def test_x11_without_libxcb_cursor_is_one_line(tmp_path: Path) -> None:
    """Qt 6.5+ aborts when its xcb plugin cannot load libxcb-cursor; the editor names the package."""
    import app.commands.editor as editor

    def without(name: str) -> str | None:
        return None if name == "xcb-cursor" else f"lib{name}.so"

    problem = editor.display_problem({"DISPLAY": "remote:0"}, "linux", without)
    assert problem == (
        "DISPLAY is remote:0, but Qt's X11 plugin needs libxcb-cursor, not installed here: "
        "on Debian or Ubuntu, sudo apt-get install libxcb-cursor0"
    )
    assert editor.display_problem(
        {"DISPLAY": "remote:0", "QT_QPA_PLATFORM": "xcb"}, "linux", without
    )
    assert editor.display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", without) is None
    assert editor.display_problem({"DISPLAY": "remote:0"}, "linux", lambda n: f"lib{n}.so") is None

"""``stemtok daw install``: the DAW scripts copied where the DAW looks, never over a changed copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.commands.daw import stemtok_command


def test_install_ardour_fills_in_the_command_and_keeps_changed_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    target = tmp_path / "ardour7" / "scripts" / "stemtok_ardour.lua"
    assert main(["daw", "install", "ardour"]) == 0
    out = capsys.readouterr().out
    assert f"installed {target}" in out and "Sandbox all Lua scripts" in out
    text = target.read_text(encoding="utf-8")
    assert stemtok_command() in text and 'default = "stemtok" }' not in text
    assert main(["daw", "install", "ardour"]) == 0
    assert "already installed, unchanged" in capsys.readouterr().out

    target.write_text(text + "-- my change\n", encoding="utf-8")
    assert main(["daw", "install", "ardour"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--overwrite" in err
    assert target.read_text(encoding="utf-8").endswith("-- my change\n")
    assert main(["daw", "install", "ardour", "--overwrite"]) == 0
    assert target.read_text(encoding="utf-8") == text


def test_install_reaper_into_a_given_folder(tmp_path: Path) -> None:
    assert main(["daw", "install", "reaper", "--dir", str(tmp_path)]) == 0
    text = (tmp_path / "stemtok_reaper.py").read_text(encoding="utf-8")
    assert "~/stemtok" not in text and "BridgeClient" in text


def test_ardour_place_refuses_what_is_not_a_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "s.ardour"
    bad.write_text("<NotASession/>", encoding="utf-8")
    args = ["daw", "ardour-place", str(bad), "--region", "T", str(bad), "0", "r"]
    assert main(args) == 2
    assert "not an Ardour session" in capsys.readouterr().err
    assert bad.read_text(encoding="utf-8") == "<NotASession/>"

"""engine.atomic: a write replaces the file whole or leaves it as it was."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from engine import atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_each_writer_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    atomic.write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic.write_text(tmp_path / "sub" / "b.txt", "é\n")  # the folder is made
    atomic.write_json(tmp_path / "c.json", {"x": [1, 2]})
    atomic.write_json(tmp_path / "d.json", {"x": 1}, indent=None)
    atomic.save_npy(tmp_path / "e.npy", np.arange(3))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "é\n"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    assert (tmp_path / "d.json").read_text() == '{"x": 1}\n'
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), np.arange(3))
    assert _names(tmp_path) == ["a.bin", "c.json", "d.json", "e.npy", "sub"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic.write_json(target, {"a": object()})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert _names(tmp_path) == ["x.json"]


def test_modes_kept_given_or_those_of_a_new_file(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        new = atomic.write_text(tmp_path / "new.txt", "a")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # not mkstemp's 0600
        os.chmod(new, 0o640)
        atomic.write_text(new, "b")
        assert stat.S_IMODE(new.stat().st_mode) == 0o640  # a replaced file keeps its mode
        private = atomic.write_text(tmp_path / "private", "c", mode=0o600)
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(mask)


def test_the_temporary_file_keeps_the_suffix(tmp_path: Path) -> None:
    with atomic.atomic_path(tmp_path / "song.flac") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".song.flac.")
        assert tmp.suffix == ".flac"
        tmp.write_bytes(b"x")
    assert _names(tmp_path) == ["song.flac"]


def test_a_folder_is_renamed_into_place_whole(tmp_path: Path) -> None:
    part, folder = tmp_path / ".song.part", tmp_path / "song"
    part.mkdir()
    (part / "a.wav").write_bytes(b"new")
    atomic.replace_folder(part, folder)
    assert (folder / "a.wav").read_bytes() == b"new" and not part.exists()
    part.mkdir()
    (part / "b.wav").write_bytes(b"newer")
    (tmp_path / ".song.old").mkdir()  # left by a replace killed halfway
    atomic.replace_folder(part, folder)
    assert [p.name for p in folder.iterdir()] == ["b.wav"]
    assert _names(tmp_path) == ["song"]

"""Pseudo-labelling: teacher -> VAD on the estimated vocals -> MUSDB-layout segments + manifest.

The teacher here is a tiny exported model built to pass the whole mixture to the vocals (its
mask head's last layer is zero with a fixed bias), so the real VAD sees a known signal: sung
vowels 3 s on / 2 s off (tests/test_vad.py) are found at their true places, noise yields
nothing, and the pipeline's cutting, naming, manifest, overwrite rules and errors are checked
against them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_teacher_export import TINY
from test_vad import ON_SEGMENTS, RATE, noise, singing

from app.cli import main
from engine.audio import write_audio
from engine.data.musdb import list_tracks
from engine.data.pseudo_label import PseudoLabelConfig, find_songs, pseudo_label, song_names
from engine.errors import StemtokError
from engine.models.roformer import BandSplitRoformer, save_teacher
from engine.runtime.teacher import TeacherSeparator

STEMS = ("vocals", "drums", "bass", "other")


def _vocals_only_teacher() -> BandSplitRoformer:
    """Masks: vocals 1 + 0j, every other stem 0 (GLU of a zero layer with a fixed bias)."""
    torch.manual_seed(0)
    model = BandSplitRoformer(TINY).eval()
    with torch.no_grad():
        for head, w in zip(model.masks, model.widths, strict=True):
            assert isinstance(head, torch.nn.Sequential)
            last = head[3]
            assert isinstance(last, torch.nn.Linear)
            last.weight.zero_()
            c2 = 2 * TINY.channels
            value = torch.zeros(4, c2, w)
            value[0, 0::2] = 1.0  # vocals, real part of every channel
            last.bias.copy_(torch.cat([value.reshape(-1), torch.full((4 * c2 * w,), 30.0)]))
    return model


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> TeacherSeparator:
    from export.teacher import export_teacher

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("pl")
        save_teacher(_vocals_only_teacher(), root / "run")
        export_teacher(
            root / "run", root / "model", window_s=1.0, overlap_s=0.2, echo=lambda line: None
        )
    finally:
        torch.set_num_threads(before)
    return TeacherSeparator(root / "model", device="cpu", threads=1, batch=8)


@pytest.fixture
def songs(tmp_path: Path) -> Path:
    src = tmp_path / "music"
    sung = singing(10.0)
    write_audio(src / "sing.wav", np.stack([sung, 0.5 * sung]), RATE, bit_depth="32f")
    write_audio(src / "more" / "noise.flac", noise(6.0)[None], RATE)
    (src / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (src / "notes.txt").write_text("not audio")
    return src


def test_sung_segments_are_found_cut_and_readable(
    teacher: TeacherSeparator, songs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pl"
    m = pseudo_label(songs, out, cfg=PseudoLabelConfig(vad_method="energy"), separator=teacher)
    names = [s["name"] for s in m["songs"]]
    assert names == ["sing__01", "sing__02"]
    for song, (a, b) in zip(m["songs"], ON_SEGMENTS, strict=True):
        assert abs(song["segment"][0] - a) < 0.3 and abs(song["segment"][1] - b) < 0.3
        assert song["pseudo_label"] and song["stems"]["vocals"] == "pseudo-label"
        assert song["source"].endswith("sing.wav") and song["split"] == "train"
    by_file = {Path(s["file"]).name: s for s in m["sources"]}
    assert (
        by_file["noise.flac"]["songs"] == []
        and "no vocal segment" in by_file["noise.flac"]["status"]
    )
    assert by_file["sing.wav"]["vad_method"] == "energy"
    assert m["kind"] == "pseudo-labels"
    sha = json.loads((teacher.model.folder / "model_config.json").read_text())["files"]
    assert m["teacher"]["files"] == sha and m["teacher"]["kind"] == "teacher"
    assert json.loads((out / "manifest.json").read_text()) == m

    tracks = list_tracks(out, "train")  # the reader 'data tokenize' and LM training use
    assert [t.name for t in tracks] == names
    sung = singing(10.0)
    for track, song in zip(tracks, m["songs"], strict=True):
        audio = track.load()
        assert audio.rate == RATE and audio.channels == 2
        start = round(song["segment"][0] * RATE)
        np.testing.assert_allclose(audio.mixture[0], sung[start : start + audio.frames], atol=1e-6)
        np.testing.assert_allclose(audio.stems["vocals"], audio.mixture, atol=1e-4)
        assert float(np.abs(audio.stems["drums"]).max()) < 1e-4
        total = sum(audio.stems[s] for s in STEMS)
        np.testing.assert_allclose(total, audio.mixture, atol=1e-5)
    from engine.training.codec_data import mono_stems

    assert mono_stems(tracks[0]).shape == (4, tracks[0].load().frames)


def test_rules_apply_to_any_segmenter_and_overwrite(
    teacher: TeacherSeparator, songs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pl"
    calls: list[int] = []

    def segmenter(vocals: np.ndarray, rate: int) -> tuple[list[tuple[float, float]], str]:
        calls.append(rate)
        return [(0.5, 1.0), (1.2, 3.0), (4.0, 4.8), (6.0, 6.5), (8.0, 9.5)], "fake"

    cfg = PseudoLabelConfig(split="extra", vad_method="energy")
    m = pseudo_label(songs, out, cfg=cfg, separator=teacher, segmenter=segmenter)
    segs = [s["segment"] for s in m["songs"] if s["source"].endswith("sing.wav")]
    assert segs == [[0.5, 3.0]] and calls == [RATE, RATE]  # merged first, then >= 2 s kept
    assert (out / "extra" / "sing__01" / "vocals.wav").is_file()
    with pytest.raises(StemtokError, match="not empty"):
        pseudo_label(songs, out, cfg=cfg, separator=teacher, segmenter=segmenter)
    (out / "mine.txt").write_text("keep me")
    m2 = pseudo_label(
        songs, out, cfg=PseudoLabelConfig(vad_method="energy", overwrite=True), separator=teacher
    )
    assert not (out / "extra").exists() or not any((out / "extra").iterdir())  # old set removed
    assert (out / "mine.txt").read_text() == "keep me"  # what it did not write stays
    assert len(m2["songs"]) == 2


def test_without_vad_every_file_is_kept_whole(
    teacher: TeacherSeparator, songs: Path, tmp_path: Path
) -> None:
    m = pseudo_label(
        songs, tmp_path / "pl", cfg=PseudoLabelConfig(vad_method="none"), separator=teacher
    )
    assert [s["name"] for s in m["songs"]] == ["noise__01", "sing__01"]  # noise too: no VAD
    assert [s["segment"] for s in m["songs"]] == [[0.0, 6.0], [0.0, 10.0]]
    assert all(src["vad_method"] == "none" for src in m["sources"])
    track = next(t for t in list_tracks(tmp_path / "pl", "train") if t.name == "sing__01")
    audio = track.load()
    sung = singing(10.0)
    np.testing.assert_allclose(audio.mixture, np.stack([sung, 0.5 * sung]), atol=1e-6)
    total = sum(audio.stems[s] for s in STEMS)
    np.testing.assert_allclose(total, audio.mixture, atol=1e-5)


def test_bad_files_are_recorded_and_the_rest_run(
    teacher: TeacherSeparator, songs: Path, tmp_path: Path
) -> None:
    (songs / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    errors: list[str] = []
    m = pseudo_label(
        songs,
        tmp_path / "pl",
        cfg=PseudoLabelConfig(vad_method="energy"),
        separator=teacher,
        on_error=lambda p, msg: errors.append(p.name),
    )
    assert errors == ["broken.wav"] and len(m["songs"]) == 2
    bad = next(s for s in m["sources"] if s["file"].endswith("broken.wav"))
    assert bad["status"].startswith("error:")


def test_inputs_and_names(tmp_path: Path) -> None:
    with pytest.raises(StemtokError, match="no such folder"):
        find_songs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StemtokError, match="no audio files"):
        find_songs(tmp_path / "empty")
    files = [Path("a/My Song!.wav"), Path("b/My Song!.flac"), Path("c/x.mp3")]
    assert song_names(files) == ["My_Song", "My_Song-2", "x"]
    with pytest.raises(StemtokError, match="split name"):
        PseudoLabelConfig(split="../up")


def test_cli(
    teacher: TeacherSeparator, songs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = [
        "data",
        "pseudo-label",
        "--in",
        str(songs),
        "--out",
        str(out),
        "--model",
        str(teacher.model.folder),
        "--vad",
        "energy",
        "--threads",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "2 segments" in capsys.readouterr().out
    assert main(["data", "stats", str(out)]) == 0
    assert "2 songs" in capsys.readouterr().out
    assert main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    empty = tmp_path / "none"
    empty.mkdir()
    assert main(["data", "pseudo-label", "--in", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no audio files" in capsys.readouterr().err

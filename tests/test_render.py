"""Part rendering: the MIDI we write, font discovery, dispatch, and FluidSynth itself.

FluidSynth tests skip when the ``fluidsynth`` command or a GM sound font is absent.
"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from engine.data import render
from engine.data.drumkit import list_kits, render_drums
from engine.data.numpy_synth import render_part_numpy
from engine.data.song import Note, Part
from engine.errors import StemtokError

RATE = 48_000
FONTS = render.available_fonts()
needs_fluidsynth = pytest.mark.skipif(
    not (render.fluidsynth_available() and FONTS),
    reason="fluidsynth or a GM sound font missing (apt install fluidsynth fluid-soundfont-gm)",
)


def _part(notes: list[Note], program: int = 0, *, drums: bool = False) -> Part:
    stem = "drums" if drums else "other"
    return Part(stem=stem, name="test", program=program, notes=tuple(notes), is_drum=drums)


def _fundamental(audio: np.ndarray, rate: int = RATE) -> float:
    seg = audio * np.hanning(len(audio))
    spec = np.abs(np.fft.rfft(seg, 4 * len(seg)))
    i = int(np.argmax(spec[1:])) + 1
    a, b, c = np.log(spec[i - 1 : i + 2] + 1e-12)
    return float((i + 0.5 * (a - c) / (a - 2 * b + c)) * rate / (4 * len(seg)))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _onset(audio: np.ndarray) -> float:
    level = np.abs(audio)
    return int(np.argmax(level > 0.05 * level.max())) / RATE


# --- the MIDI file ----------------------------------------------------------------------------


def _read_events(path: Path) -> tuple[list[tuple[float, mido.Message]], float]:
    midi = mido.MidiFile(str(path))
    assert midi.type == 0 and len(midi.tracks) == 1
    now, events = 0.0, []
    for msg in midi:  # iterating a file yields times in seconds
        now += msg.time
        if not msg.is_meta:
            events.append((now, msg))
    return events, now


def test_part_midi_times_channel_and_program(tmp_path: Path) -> None:
    notes = [Note(0.0, 0.5, 60, 100), Note(0.25, 1.0, 64, 80), Note(1.2345, 0.1, 67, 127)]
    render._part_midi(_part(notes, program=33), tmp_path / "p.mid", end=3.0)
    events, length = _read_events(tmp_path / "p.mid")
    assert length == pytest.approx(3.0, abs=1e-3)
    assert events[0][1].type == "program_change" and events[0][1].program == 33
    ons = [(t, m.note, m.velocity) for t, m in events if m.type == "note_on"]
    offs = [(t, m.note) for t, m in events if m.type == "note_off"]
    assert all(m.channel == render.MELODIC_CHANNEL for _, m in events)
    for (t, pitch, vel), note in zip(ons, notes, strict=True):
        assert (pitch, vel) == (note.pitch, note.velocity)
        assert t == pytest.approx(note.start, abs=0.5 / render.TICKS_PER_SECOND)
    ends = {pitch: t for t, pitch in offs}
    assert ends[64] == pytest.approx(1.25, abs=1e-3)


def test_drum_parts_use_channel_10(tmp_path: Path) -> None:
    render._part_midi(_part([Note(0.0, 0.1, 36, 100)], drums=True), tmp_path / "d.mid")
    events, _ = _read_events(tmp_path / "d.mid")
    assert {m.channel for _, m in events} == {render.DRUM_CHANNEL}


def test_repeated_pitch_is_cut_before_it_sounds_again(tmp_path: Path) -> None:
    notes = [Note(0.0, 1.0, 60, 100), Note(0.5, 1.0, 60, 90), Note(1.5, 0.5, 60, 80)]
    render._part_midi(_part(notes), tmp_path / "r.mid")
    events, _ = _read_events(tmp_path / "r.mid")
    kinds = [(round(t, 3), m.type) for t, m in events if m.type.startswith("note")]
    assert kinds == [
        (0.0, "note_on"),
        (0.5, "note_off"),
        (0.5, "note_on"),
        (1.5, "note_off"),
        (1.5, "note_on"),
        (2.0, "note_off"),
    ]


# --- fonts and dispatch -----------------------------------------------------------------------


def test_available_fonts_orders_and_dedupes(tmp_path: Path) -> None:
    sf2, sf3 = tmp_path / "sf2", tmp_path / "sf3"
    sf2.mkdir()
    sf3.mkdir()
    for name in ("B.sf2", "A.sf2", "FluidR3_GS.sf2", "FluidR3Mono_GM.sf2", "Strings.sf2"):
        (sf2 / name).write_bytes(b"RIFF")
    (sf3 / "Main.sf3").write_bytes(b"RIFF")
    (sf3 / "default-GM.sf3").symlink_to(sf3 / "Main.sf3")
    fonts = render.available_fonts(known=[sf3 / "Main.sf3", tmp_path / "gone.sf2"], dirs=[sf2, sf3])
    expected = [sf3 / "Main.sf3", sf2 / "A.sf2", sf2 / "B.sf2", sf2 / "Strings.sf2"]
    assert fonts == [p.resolve() for p in expected]


def test_no_font_renders_with_numpy() -> None:
    part = _part([Note(0.1, 0.4, 60, 100)], program=24)
    out = render.render_part(part, 1.0, font=None, seed=3)
    assert out.tobytes() == render_part_numpy(part, 1.0, seed=3).tobytes()


@pytest.mark.skipif(not list_kits(), reason="hydrogen-drumkits not installed")
def test_kit_renders_drums_with_the_sampler() -> None:
    kit = list_kits()[0]
    part = _part([Note(0.1, 0.1, 36, 100)], drums=True)
    out = render.render_part(part, 1.0, font=None, seed=3, kit=kit)
    assert out.tobytes() == render_drums(part, 1.0, kit=kit, seed=3).tobytes()
    melodic = _part([Note(0.1, 0.4, 60, 100)])
    assert not np.array_equal(
        render.render_part(melodic, 1.0, font=None, seed=3, kit=kit), out
    )  # the kit is for drum parts only


def test_missing_font_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StemtokError, match="sound font not found"):
        render.render_part(_part([Note(0, 1, 60, 100)]), 1.0, font=tmp_path / "x.sf2", seed=0)


@pytest.mark.skipif(not render.fluidsynth_available(), reason="fluidsynth not installed")
def test_broken_font_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a sound font")
    with pytest.raises(StemtokError, match="fluidsynth"):
        render.render_part_fluidsynth(_part([Note(0, 1, 60, 100)]), 1.0, font=bad)


# --- FluidSynth -------------------------------------------------------------------------------


@needs_fluidsynth
@pytest.mark.parametrize("font", FONTS, ids=[f.name for f in FONTS])
def test_every_font_loads_and_plays_a4_in_tune(font: Path) -> None:
    part = _part([Note(0.5, 1.0, 69, 100)], program=0)
    out = render.render_part(part, 2.0, font=font, seed=0)
    assert out.shape == (2 * RATE,) and out.dtype == np.float32
    assert not np.any(out[: RATE // 2 - 1])  # silent before the note
    assert 0.01 < float(np.abs(out).max()) < 1.0
    f0 = _fundamental(out[int(0.6 * RATE) : int(1.2 * RATE)])
    assert abs(f0 / 440.0 - 1.0) < 0.02, f"{font.name}: {f0:.1f} Hz"
    assert abs(_onset(out) - 0.5) < 0.01


@needs_fluidsynth
def test_fluidsynth_is_deterministic_and_sized() -> None:
    part = _part([Note(0.0, 0.3, 48 + i, 90) for i in range(0, 12, 4)], program=48)
    a = render.render_part(part, 1.2345, font=FONTS[0], seed=0)
    b = render.render_part(part, 1.2345, font=FONTS[0], seed=1)
    assert a.shape == (round(1.2345 * RATE),) and a.dtype == np.float32
    assert a.tobytes() == b.tobytes()


@needs_fluidsynth
def test_fluidsynth_silence_and_energy() -> None:
    part = _part([Note(1.0, 0.5, 60, 100)], program=0)
    out = render.render_part(part, 4.0, font=FONTS[0], seed=0)
    assert not np.any(out[: RATE - 1])
    assert _rms(out[RATE : int(1.5 * RATE)]) > 1e-3
    assert _rms(out[int(3.5 * RATE) :]) < 1e-3 * _rms(out[RATE : int(1.5 * RATE)])


@needs_fluidsynth
def test_fluidsynth_pads_past_the_last_note_and_trims_the_tail() -> None:
    part = _part([Note(0.0, 0.2, 60, 100)], program=0)
    long = render.render_part(part, 5.0, font=FONTS[0], seed=0)
    short = render.render_part(_part([Note(0.0, 3.0, 60, 100)]), 1.0, font=FONTS[0], seed=0)
    assert long.shape == (5 * RATE,) and short.shape == (RATE,)
    assert _rms(short[-RATE // 10 :]) > 1e-4  # cut while still sounding


@needs_fluidsynth
def test_fluidsynth_gm_drums_on_channel_10() -> None:
    part = _part([Note(1.0, 0.1, 36, 110), Note(1.5, 0.1, 38, 110)], drums=True)
    out = render.render_part(part, 2.0, font=FONTS[0], seed=0)
    assert not np.any(out[: RATE - 1])
    assert abs(_onset(out) - 1.0) < 0.005
    kick = np.abs(np.fft.rfft(out[RATE : RATE + RATE // 4]))
    assert np.argmax(kick) * 4 < 200  # the energy of a kick drum is low
    piano = render.render_part(_part([Note(1.0, 0.1, 36, 110)]), 2.0, font=FONTS[0], seed=0)
    assert not np.allclose(piano, out)  # key 36 on channel 10 is a drum, not a low C

"""The hydrogen drum sampler: kit parsing, name mapping, layers, timing, choking.

A small kit written into tmp_path tests everything without system packages; the installed
``hydrogen-drumkits`` are checked too when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.audio import write_audio
from engine.data import drumkit as dk
from engine.data.song import Note, Part
from engine.errors import StemtokError

RATE = 48_000
SRC_RATE = 44_100


def _drums(*notes: Note) -> Part:
    return Part(stem="drums", name="kit", program=0, notes=notes, is_drum=True)


def _onset(audio: np.ndarray, fraction: float = 0.05) -> float:
    level = np.abs(audio)
    return int(np.argmax(level > fraction * level.max())) / RATE


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _tone(
    seconds: float, freq: float, amp: float, *, lead: float = 0.0, tau: float = 0.1
) -> np.ndarray:
    """A decaying sine after ``lead`` seconds of silence, at the source rate ``[1, L]``."""
    t = np.arange(round(seconds * SRC_RATE)) / SRC_RATE
    wave = amp * np.sin(2 * np.pi * freq * t) * np.exp(-t / tau)
    return np.concatenate([np.zeros(round(lead * SRC_RATE)), wave])[None, :]


def _noise(seconds: float, amp: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, amp, (1, round(seconds * SRC_RATE))), -1.0, 1.0)


_INSTRUMENT = """  <instrument><id>{i}</id><name>{name}</name><volume>{volume}</volume>
   <gain>1</gain>{body}</instrument>"""
_LAYER = (
    "<layer><filename>{f}</filename><min>{lo}</min><max>{hi}</max><gain>1</gain>"
    "<pitch>{pitch}</pitch></layer>"
)


def _write_kit(folder: Path, instruments: list[tuple[str, float, str]], licence: str) -> None:
    body = "\n".join(
        _INSTRUMENT.format(i=i, name=name, volume=volume, body=layers)
        for i, (name, volume, layers) in enumerate(instruments)
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">\n'
        f" <name>{folder.name}</name><author>tests</author><license>{licence}</license>\n"
        f" <instrumentList>\n{body}\n </instrumentList>\n</drumkit_info>\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drumkit.xml").write_text(xml)


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two kits: "TestKit" (kick with two layers and 10 ms of leading silence, an old-format
    snare, closed and open hats, a missing and an unnamed instrument) and "PercOnly"."""
    root = tmp_path_factory.mktemp("kits")
    kit = root / "TestKit"
    kit.mkdir()
    samples = {
        "kick_soft.wav": _tone(0.5, 60.0, 0.25, lead=0.010),
        "kick_hard.wav": _tone(0.5, 60.0, 0.9, lead=0.010),
        "snare.flac": _noise(0.3, 0.2, 1),
        "hat_closed.wav": _noise(0.05, 0.2, 2),
        "hat_open.wav": _noise(1.5, 0.2, 3),
        "bell.wav": _tone(0.5, 1000.0, 0.5),
    }
    for name, audio in samples.items():
        write_audio(kit / name, audio, SRC_RATE, bit_depth=24)
    _write_kit(
        kit,
        [
            (
                "Kick",
                1.0,
                _LAYER.format(f="kick_soft.wav", lo=0, hi=0.5, pitch=0)
                + _LAYER.format(f="kick_hard.wav", lo=0.5, hi=1, pitch=0),
            ),
            ("Snare Rock", 0.8, "<filename>snare.flac</filename>"),
            ("Closed HH", 1.0, _LAYER.format(f="hat_closed.wav", lo=0, hi=1, pitch=0)),
            ("Open HH", 1.0, _LAYER.format(f="hat_open.wav", lo=0, hi=1, pitch=0)),
            ("Cowbell", 1.0, _LAYER.format(f="bell.wav", lo=0, hi=1, pitch=12)),
            ("Tom Gone", 1.0, _LAYER.format(f="missing.wav", lo=0, hi=1, pitch=0)),
            ("17", 1.0, _LAYER.format(f="bell.wav", lo=0, hi=1, pitch=0)),
        ],
        "CC0",
    )
    perc = root / "PercOnly"
    perc.mkdir()
    write_audio(perc / "bongo.wav", _tone(0.3, 300.0, 0.5), SRC_RATE)
    _write_kit(perc, [("Bongo Hi", 1.0, _LAYER.format(f="bongo.wav", lo=0, hi=1, pitch=0))], "")
    return root


# --- names and classes ------------------------------------------------------------------------

NAMES = {
    'Kick (Tama Superstar 22")': "kick",
    "BassDrum": "kick",
    "c3 - bass drum 1": "kick",
    "Pearl Side Stick": "rim",
    "Rim Click (Pearl Free Floating Maple 14x3.5)": "rim",
    "Snare Rimshot (Pearl Free Floating Maple 14x3.5)": "snare",
    "Snare Jazz": "snare",
    "Hand Clap": "clap",
    "Closed HH": "hat_closed",
    'Hi-Hat Closed (Paiste Alpha Metal edge 14")': "hat_closed",
    "Sabian Hat Pedal": "hat_pedal",
    "Hi Hat Opened": "hat_open",
    "Side OHH": "hat_open",
    "Sabian Hat Semi-Open": "hat_open",
    "Floor Tom": "tom_low",
    "Pearl Tom 2": "tom_mid",
    "Pearl Tom 1": "tom_high",
    "tomhi2": "tom_high",
    "c4 - middle tom": "tom_mid",
    'Crash/Ride Bell (Paiste Rude Crash/Ride 18")': "ride_bell",
    'Ride (Custom, Zagrebin 22")': "ride",
    "ride-cup": "ride_bell",
    'China (Paiste Alpha 18")': "crash",
    "d#4 - cymbal 1": "crash",
    "Tambourine": "tambourine",
    "Maraca": "shaker",
    "Agogo High (Pearl ECB-23)": "cowbell",
    "Bongo Hi": "perc",
    "Snare Roll": None,
    "Sabian Hat Choke": None,
    "Zap 1": None,
    "17": None,
}


@pytest.mark.parametrize(("name", "cls"), NAMES.items())
def test_instrument_names_map_to_classes(name: str, cls: str | None) -> None:
    assert dk.instrument_class(name) == cls


def test_gm_keys_map_to_classes() -> None:
    assert dk.gm_drum_class(36) == dk.gm_drum_class(35) == "kick"
    assert dk.gm_drum_class(38) == dk.gm_drum_class(40) == "snare"
    assert dk.gm_drum_class(42) == "hat_closed" and dk.gm_drum_class(46) == "hat_open"
    assert dk.gm_drum_class(49) == "crash" and dk.gm_drum_class(51) == "ride"
    assert dk.gm_drum_class(100) == "perc"
    assert set(dk.GM_DRUM_CLASS.values()) <= set(dk.CLASS_FALLBACK)


def test_missing_classes_fall_back_to_the_nearest() -> None:
    assert dk.resolve_class("hat_pedal", {"hat_closed", "hat_open"}) == "hat_closed"
    assert dk.resolve_class("crash", {"ride", "kick"}) == "ride"
    assert dk.resolve_class("tom_mid", {"tom_high"}) == "tom_high"
    assert dk.resolve_class("cowbell", {"kick"}) is None


# --- the test kit -----------------------------------------------------------------------------


def test_parse_kit(kits: Path) -> None:
    kit = dk.parse_kit(kits / "TestKit" / "drumkit.xml")
    names = [inst.name for inst in kit.instruments]
    assert names == ["Kick", "Snare Rock", "Closed HH", "Open HH", "Cowbell", "17"]  # no "Gone"
    assert kit.licence == "CC0" and kit.author == "tests"
    by_class = kit.by_class()
    assert set(by_class) == {"kick", "snare", "hat_closed", "hat_open", "cowbell"}
    assert len(by_class["kick"][0].layers) == 2
    assert by_class["snare"][0].layers[0].path.name == "snare.flac"  # old one-sample format
    assert by_class["cowbell"][0].layers[0].pitch == 12.0


def test_list_kits_keeps_complete_kits(kits: Path) -> None:
    assert dk.list_kits(kits) == ["TestKit"]
    assert dk.list_kits(kits, complete=False) == ["PercOnly", "TestKit"]
    assert dk.list_kits(kits / "absent") == []
    assert dk.load_kit("PercOnly", kits).licence == dk.COPYRIGHT_NOTE


def test_unknown_kit_is_a_clear_error(kits: Path) -> None:
    with pytest.raises(StemtokError, match="not found"):
        dk.render_drums(_drums(), 1.0, kit="NoSuchKit", seed=0, root=kits)


def test_layer_is_picked_by_velocity(kits: Path) -> None:
    kick = dk.load_kit("TestKit", kits).by_class()["kick"][0]
    assert kick.layer_for(30).path.name == "kick_soft.wav"
    assert kick.layer_for(127).path.name == "kick_hard.wav"


def test_output_shape_dtype_and_determinism(kits: Path) -> None:
    part = _drums(Note(0.0, 0.1, 36, 100), Note(0.5, 0.1, 38, 90), Note(0.75, 0.1, 42, 80))
    a = dk.render_drums(part, 1.2345, kit="TestKit", seed=5, root=kits)
    assert a.shape == (round(1.2345 * RATE),) and a.dtype == np.float32
    assert a.tobytes() == dk.render_drums(part, 1.2345, kit="TestKit", seed=5, root=kits).tobytes()


def test_kick_lands_on_time_despite_leading_silence(kits: Path) -> None:
    out = dk.render_drums(_drums(Note(1.0, 0.1, 36, 110)), 2.0, kit="TestKit", seed=0, root=kits)
    assert not np.any(out[: RATE - 48])
    assert abs(_onset(out) - 1.0) < 0.005


def test_velocity_sets_layer_and_level(kits: Path) -> None:
    soft = dk.render_drums(_drums(Note(0.0, 0.1, 36, 40)), 0.5, kit="TestKit", seed=0, root=kits)
    hard = dk.render_drums(_drums(Note(0.0, 0.1, 36, 127)), 0.5, kit="TestKit", seed=0, root=kits)
    # soft layer 0.25 at 40/127, hard layer 0.9 at full velocity, both times DRUM_GAIN
    assert np.abs(soft).max() == pytest.approx(0.25 * 40 / 127 * dk.DRUM_GAIN, rel=0.05)
    assert np.abs(hard).max() == pytest.approx(0.9 * dk.DRUM_GAIN, rel=0.05)


def test_layer_pitch_shifts_the_sample(kits: Path) -> None:
    out = dk.render_drums(_drums(Note(0.0, 0.1, 56, 127)), 0.5, kit="TestKit", seed=0, root=kits)
    spec = np.abs(np.fft.rfft(out[: RATE // 4]))
    assert np.argmax(spec) * 4 == pytest.approx(2000.0, rel=0.01)  # 1 kHz up an octave


def test_closed_hat_chokes_open_hat(kits: Path) -> None:
    open_only = _drums(Note(0.0, 0.1, 46, 100))
    choked = _drums(Note(0.0, 0.1, 46, 100), Note(0.5, 0.1, 42, 100))
    ring = dk.render_drums(open_only, 1.5, kit="TestKit", seed=0, root=kits)
    cut = dk.render_drums(choked, 1.5, kit="TestKit", seed=0, root=kits)
    assert np.array_equal(ring[: RATE // 2], cut[: RATE // 2])
    after = slice(int(0.6 * RATE), int(1.4 * RATE))  # closed hat (50 ms) is over by then
    assert _rms(ring[after]) > 0.01 and not np.any(cut[after])


def test_unmapped_notes_are_dropped(kits: Path) -> None:
    out = dk.render_drums(_drums(Note(0.0, 0.1, 47, 100)), 0.5, kit="TestKit", seed=0, root=kits)
    assert not np.any(out)  # no toms and no hand drums to stand in for them


def test_mix_hits_adds_and_cuts_at_the_end() -> None:
    wave = np.ones(10, np.float32)
    hits = [dk.Hit(0, wave, 0.5, "kick"), dk.Hit(5, wave, 0.25, "snare"), dk.Hit(30, wave, 1, "x")]
    out = dk.mix_hits(hits, 12, RATE)
    assert out.tolist() == [0.5] * 5 + [0.75] * 5 + [0.25] * 2


# --- the installed hydrogen-drumkits ----------------------------------------------------------

installed = pytest.mark.skipif(
    not dk.KITS_DIR.is_dir(),
    reason="hydrogen-drumkits not installed (apt install hydrogen-drumkits)",
)


@installed
@pytest.mark.parametrize("name", dk.list_kits(complete=False) if dk.KITS_DIR.is_dir() else [])
def test_every_installed_kit_parses(name: str) -> None:
    kit = dk.load_kit(name)
    assert kit.instruments and kit.licence
    assert all(layer.path.is_file() for inst in kit.instruments for layer in inst.layers)
    assert all(0.0 <= la.vmin <= la.vmax <= 1.0 for i in kit.instruments for la in i.layers)
    assert kit.by_class(), f"{name}: no instrument recognised"


@installed
def test_installed_complete_kits() -> None:
    complete = dk.list_kits()
    assert len(complete) >= 8
    assert set(complete) < set(dk.list_kits(complete=False))  # percussion-only kits left out
    for name in complete:
        assert set(dk.CORE_CLASSES) <= set(dk.load_kit(name).by_class())


@installed
@pytest.mark.parametrize("name", dk.list_kits() if dk.KITS_DIR.is_dir() else [])
def test_kick_on_time_on_every_installed_kit(name: str) -> None:
    part = _drums(Note(1.0, 0.1, 36, 110), Note(1.5, 0.1, 38, 100), Note(1.75, 0.1, 42, 90))
    out = dk.render_drums(part, 2.5, kit=name, seed=1)
    assert out.shape == (round(2.5 * RATE),) and np.all(np.isfinite(out))
    assert abs(_onset(out[: int(1.5 * RATE)]) - 1.0) < 0.005
    assert _rms(out[int(1.5 * RATE) : int(1.75 * RATE)]) > 1e-3  # the snare
    assert 0.05 < float(np.abs(out).max()) < 1.0

"""Generator version 2 production: BS.1770 loudness, the mix bus, per-track chains, sidechain."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from engine.audio import read_audio, write_audio
from engine.constants import STEMS
from engine.data import chains, loudness, mixbus, pipeline, record
from engine.data.song import Note, Part

RATE = 48_000
SECS = 6.0


def _sine(f: float, amp: float, secs: float = 3.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(secs * rate)) / rate
    return amp * np.sin(2 * np.pi * f * t)


def test_bs1770_calibration_and_gates() -> None:
    x = _sine(997.0, 1.0)
    assert loudness.integrated_loudness(np.stack([x, x]), RATE) == pytest.approx(0.0, abs=0.02)
    assert loudness.integrated_loudness(np.stack([x, 0 * x]), RATE) == pytest.approx(
        -3.01, abs=0.02
    )
    quiet = np.stack([x, x]) * 10 ** (-20 / 20)
    assert loudness.integrated_loudness(quiet, RATE) == pytest.approx(-20.0, abs=0.02)
    y = _sine(997.0, 0.1, rate=44_100)
    assert loudness.integrated_loudness(np.stack([y, y]), 44_100) == pytest.approx(-20.0, abs=0.05)
    # silence is gated out (absolute gate; ungated this would be -23.7 LUFS) and so is a part
    # 30 dB down (relative gate; ungated -23 LUFS), but for the blocks that straddle a step
    padded = np.concatenate([np.zeros((2, 3 * RATE)), quiet, np.zeros((2, RATE))], axis=1)
    assert loudness.integrated_loudness(padded, RATE) == pytest.approx(-20.0, abs=0.5)
    steps = np.concatenate([quiet, quiet * 10 ** (-30 / 20)], axis=1)
    assert loudness.integrated_loudness(steps, RATE) == pytest.approx(-20.0, abs=0.5)
    assert loudness.integrated_loudness(np.zeros((2, RATE)), RATE) == -math.inf


def test_k_weighting_matches_the_standard_at_48k() -> None:
    sos = loudness.k_weighting(RATE)
    assert sos[0, :3] == pytest.approx([1.53512485958697, -2.69169618940638, 1.19839281085285])
    assert sos[0, 4:] == pytest.approx([-1.69065929318241, 0.73248077421585])
    assert sos[1, 4:] == pytest.approx([-1.99004745483398, 0.99007225036621])


def test_crest_and_centroid() -> None:
    x = _sine(1000.0, 0.5)
    assert loudness.crest_factor_db(x) == pytest.approx(3.01, abs=0.01)
    assert loudness.spectral_centroid_hz(np.stack([x, x]), RATE) == pytest.approx(1000.0, rel=0.01)
    two = _sine(500.0, 1.0) + _sine(2000.0, 1.0)  # equal power: centroid halfway
    assert loudness.spectral_centroid_hz(two, RATE) == pytest.approx(1250.0, rel=0.01)


def _busy_mix(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(SECS * RATE)) / RATE
    env = 0.25 + 0.75 * (np.sin(2 * np.pi * 0.7 * t) > 0)
    x = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([x * env, np.roll(x, 100) * env])


@pytest.mark.parametrize("target", [-14.0, -10.0, -7.0])
def test_mixbus_reaches_target_under_the_ceiling(target: float) -> None:
    mix = _busy_mix(1)
    p = mixbus.draw_bus(np.random.default_rng(0), (target, target))
    res = mixbus.master_gain(mix, p, RATE)
    out = mix * res.gain
    assert loudness.integrated_loudness(out, RATE) == pytest.approx(target, abs=0.2)
    assert np.abs(out).max() <= 10 ** (p.ceiling_db / 20) * (1 + 1e-9)
    assert res.gain.shape == (mix.shape[1],) and res.gain.min() > 0


def test_limiter_holds_the_ceiling_on_a_spike() -> None:
    x = np.full((2, 4800), 0.1)
    x[:, 2000] = 2.0
    g = mixbus.limiter_gain(np.abs(x).max(axis=0), 0.5, lookahead=96, release_ms=50.0, rate=RATE)
    assert np.abs(x * g).max() <= 0.5 + 1e-12
    assert g[0] == pytest.approx(1.0) and g[1990] < 1.0  # looks ahead, leaves the start alone


def _part(
    stem: str,
    name: str,
    program: int = 0,
    role: str = "",
    drum: bool = False,
    notes: tuple[Note, ...] = (),
) -> Part:
    return Part(stem=stem, name=name, program=program, notes=notes, is_drum=drum, role=role)


def _tone(f0: float, seed: int) -> np.ndarray:
    t = np.arange(round(SECS * RATE)) / RATE
    phase = 2 * np.pi * f0 * t + np.random.default_rng(seed).uniform(0, 6)
    return np.asarray(0.2 * sum(np.sin(k * phase) / k for k in range(1, 8)), np.float32)


def _song() -> list[tuple[Part, np.ndarray]]:
    kicks = tuple(Note(0.5 * k, 0.1, 36, 100) for k in range(int(SECS * 2)))
    drum = np.zeros(round(SECS * RATE), np.float32)
    t = np.arange(RATE // 5) / RATE
    for note in kicks:
        k = round(note.start * RATE)
        drum[k : k + t.size] += np.sin(2 * np.pi * 55 * t) * np.exp(-t * 20)
    return [
        (_part("vocals", "lead vocal"), _tone(220.0, 1)),
        (_part("drums", "edm kit", drum=True, notes=kicks), drum),
        (_part("bass", "bass", 38), _tone(55.0, 2)),
        (_part("other", "supersaw", 81, role="pad"), _tone(330.0, 3)),
        (_part("other", "tacet", 73), np.zeros(round(SECS * RATE), np.float32)),
    ]


@pytest.fixture(scope="module")
def made() -> record.Production:
    return record.produce_record(_song(), seed=4, tempo=120.0, genre="edm")


def test_record_exact_sum_after_24bit_readback(made: record.Production, tmp_path: Path) -> None:
    write_audio(tmp_path / "mixture.wav", made.mixture, RATE, bit_depth=24)
    stems = []
    for s in STEMS:
        write_audio(tmp_path / f"{s}.wav", made.stems[s], RATE, bit_depth=24)
        stems.append(read_audio(tmp_path / f"{s}.wav")[0].astype(np.float64))
    mix = read_audio(tmp_path / "mixture.wav")[0].astype(np.float64)
    assert np.array_equal(mix, np.sum(stems, axis=0))
    assert np.array_equal(made.mixture.astype(np.float64), np.sum(stems, axis=0))


def test_record_loudness_within_1_lu_of_the_drawn_target(made: record.Production) -> None:
    bus = made.chain["bus"]
    assert record.LOUDNESS["edm"][0] <= bus["target_lufs"] <= record.LOUDNESS["edm"][1]
    measured = loudness.integrated_loudness(made.mixture, RATE)
    assert measured == pytest.approx(bus["target_lufs"], abs=1.0)
    ceiling = 10 ** ((bus["ceiling_db"] + 0.001) / 20)  # the record rounds to 0.001 dB
    assert float(np.abs(made.mixture).max()) <= ceiling
    assert max(float(np.abs(x).max()) for x in made.stems.values()) <= ceiling
    assert made.chain["tracks"][-1]["silent"] and bus["safety_scale_db"] == 0.0


def test_record_same_seed_same_bytes(made: record.Production) -> None:
    again = record.produce_record(_song(), seed=4, tempo=120.0, genre="edm")
    other = record.produce_record(_song(), seed=5, tempo=120.0, genre="edm")
    for s in STEMS:
        assert made.stems[s].tobytes() == again.stems[s].tobytes()
    assert made.mixture.tobytes() != other.mixture.tobytes()


def test_sidechain_ducks_after_each_kick() -> None:
    g = record.duck_curve([0.5, 1.0], RATE * 2, RATE, depth_db=6.0, release_s=0.3)
    assert g[: RATE // 2].min() == 1.0
    assert 20 * math.log10(g[round(0.505 * RATE)]) == pytest.approx(-6.0, abs=0.1)
    assert g[round(0.79 * RATE)] == pytest.approx(1.0, abs=0.01) and g.max() == 1.0


def test_saturation_and_reverbs() -> None:
    x = _tone(200.0, 9)[None, :]
    y = chains.saturate(x, 18.0, 1.0)
    assert np.abs(y).max() < np.abs(x).max() and not np.allclose(x, y)
    rng = np.random.default_rng(0)
    for verb in chains.draw_verbs(rng):
        ir = chains.impulse_response(verb, RATE, 1)
        assert ir.shape[0] == 2 and np.sum(ir[0] ** 2) == pytest.approx(1.0)
        late = ir[:, round((verb.predelay_s + verb.rt60) * RATE) :]
        assert np.sum(late**2) < 1e-3 * 2  # 60 dB down after RT60 (energy)


def _digest(song: pipeline.RenderedSong) -> str:
    h = hashlib.sha256()
    for a in [song.mixture, *(song.stems[s] for s in STEMS)]:
        h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.hexdigest()


def test_version_1_renders_what_it_always_rendered() -> None:
    """Digest recorded from the commit before version 2 existed (numpy backend)."""
    spec = pipeline.procedural_song(77, 8, 10)
    song = pipeline.render_song(spec, rate=RATE, seed=77, backend="numpy", version="1")
    assert _digest(song) == "b930fa5642c61ca814ec8226fe0428490ca3aa311e645f95e0737f5aaaf09202"

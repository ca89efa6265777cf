"""Production (per-track effects, pan, stems, master) of rendered tracks: engine.data.production."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from engine.constants import STEMS
from engine.data import production as P
from engine.data.song import Part
from engine.errors import StemtokError

RATE = 48_000
SECS = 1.5


def _part(stem: str, name: str, program: int = 0, role: str = "", drum: bool = False) -> Part:
    return Part(stem=stem, name=name, program=program, notes=(), is_drum=drum, role=role)


def _tone(f0: float, seed: int, harmonics: int = 6) -> np.ndarray:
    t = np.arange(int(SECS * RATE)) / RATE
    f = f0 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.0 * t))
    phase = 2 * np.pi * np.cumsum(f) / RATE + np.random.default_rng(seed).uniform(0, 6)
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return np.asarray(0.2 * x, dtype=np.float32)


def _drums(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(SECS * RATE)
    x = np.zeros(n)
    t = np.arange(int(0.25 * RATE)) / RATE
    hit = np.sin(2 * np.pi * 60 * t) * np.exp(-t * 12) + 0.3 * rng.standard_normal(t.size) * np.exp(
        -t * 30
    )
    for start in range(0, n - t.size, RATE // 4):
        x[start : start + t.size] += hit
    return np.asarray(0.4 * x, dtype=np.float32)


def _song(with_vocals: bool = True) -> list[tuple[Part, np.ndarray]]:
    tracks = [
        (_part("drums", "kick+snare", drum=True), _drums(1)),
        (_part("bass", "bass", 33), _tone(55.0, 2)),
        (_part("other", "guitar", 30, role="guitar"), _tone(196.0, 3)),
        (_part("other", "piano", 0, role="keys"), _tone(262.0, 4)),
        (_part("other", "strings pad", 48, role="pad"), _tone(330.0, 5)[: RATE // 2]),  # shorter
        (_part("other", "tacet", 73), np.zeros(int(SECS * RATE), dtype=np.float32)),
    ]
    if with_vocals:
        tracks.insert(0, (_part("vocals", "lead vocal"), _tone(220.0, 6, 12)))
    return tracks


@pytest.fixture(scope="module")
def prod() -> P.Production:
    return P.produce(_song(), seed=11, tempo=120.0)


def test_shapes_dtype_and_names(prod: P.Production) -> None:
    n = int(SECS * RATE)
    assert tuple(prod.stems) == STEMS
    for stem in prod.stems.values():
        assert stem.shape == (2, n) and stem.dtype == np.float32
    assert prod.mixture.shape == (2, n) and prod.mixture.dtype == np.float32
    assert prod.stem_array().shape == (4, 2, n)


def test_deterministic_per_seed() -> None:
    a = P.produce(_song(), seed=5)
    b = P.produce(_song(), seed=5)
    c = P.produce(_song(), seed=6)
    for s in STEMS:
        np.testing.assert_array_equal(a.stems[s], b.stems[s])
    assert a.chain == b.chain
    assert not np.array_equal(a.mixture, c.mixture)


def test_mixture_is_exact_sum_on_24bit_grid(prod: P.Production) -> None:
    total = sum(prod.stems[s].astype(np.float64) for s in STEMS)
    assert np.max(np.abs(prod.mixture.astype(np.float64) - total)) == 0.0
    for a in [*prod.stems.values(), prod.mixture]:
        k = a.astype(np.float64) * 2**23
        assert np.array_equal(k, np.round(k)), "not on the 24-bit grid"


def test_no_clipping_and_headroom(prod: P.Production) -> None:
    peak = float(np.abs(prod.mixture).max())
    assert 0.45 <= peak <= 0.9
    assert max(float(np.abs(s).max()) for s in prod.stems.values()) <= 0.9
    assert prod.chain["peak"] == pytest.approx(peak, abs=1e-4)


def test_roundtrip_24bit_wav_with_libsndfile(prod: P.Production, tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    back = {}
    for name, audio in [*prod.stems.items(), ("mixture", prod.mixture)]:
        path = tmp_path / f"{name}.wav"
        sf.write(path, audio.T, RATE, subtype="PCM_24")
        back[name] = sf.read(path, dtype="float64")[0].T
        assert np.array_equal(back[name], audio.astype(np.float64))
    total = sum(back[s] for s in STEMS)
    assert np.max(np.abs(back["mixture"] - total)) == 0.0


def test_roundtrip_24bit_wav_with_engine_audio(prod: P.Production, tmp_path: Path) -> None:
    audio_io = pytest.importorskip("engine.audio")
    back = {}
    for name, audio in [*prod.stems.items(), ("mixture", prod.mixture)]:
        path = audio_io.write_audio(tmp_path / f"{name}.wav", audio, RATE, bit_depth=24)
        back[name] = audio_io.read_audio(path, dtype=np.float64)[0]
    total = sum(back[s] for s in STEMS)
    assert np.max(np.abs(back["mixture"] - total)) == 0.0
    assert np.array_equal(back["mixture"], prod.mixture.astype(np.float64))


def test_silent_stems_stay_silent() -> None:
    prod = P.produce(_song(with_vocals=False), seed=3)
    assert not np.any(prod.stems["vocals"])
    assert all(np.any(prod.stems[s]) for s in ("drums", "bass", "other"))


def test_silent_track_recorded_and_chain_serialisable(prod: P.Production) -> None:
    records = prod.chain["tracks"]
    assert len(records) == len(_song())
    assert [r for r in records if r.get("silent")] == [
        {"name": "tacet", "stem": "other", "silent": True}
    ]
    json.dumps(prod.chain)  # the manifest stores it as JSON
    dist = {r["name"]: r["drive_db"] for r in records if not r.get("silent")}
    assert dist["guitar"] > 0 and dist["piano"] == 0 and dist["lead vocal"] == 0


def test_vocals_on_top() -> None:
    for seed in (1, 2, 3):
        prod = P.produce(_song(), seed=seed)
        voc = P.active_rms(prod.stems["vocals"])
        for s in ("drums", "bass"):
            assert voc > P.active_rms(prod.stems[s]), (seed, s)


def test_mono_stems_sum_to_mono_mixture(prod: P.Production) -> None:
    m = P.mono(prod.stems)
    assert all(a.shape == (prod.mixture.shape[1],) for a in m.values())
    total = sum(a.astype(np.float64) for a in m.values())
    np.testing.assert_array_equal(total, P.to_mono(prod.mixture).astype(np.float64))


def test_constant_power_pan() -> None:
    x = _tone(440.0, 0)
    for pan in (-1.0, -0.3, 0.0, 0.7, 1.0):
        st = P.pan_stereo(x, pan)
        assert np.sum(st.astype(np.float64) ** 2) == pytest.approx(
            np.sum(x.astype(np.float64) ** 2), rel=1e-5
        )
    hard_left = P.pan_stereo(x, -1.0)
    assert np.max(np.abs(hard_left[1])) < 1e-6


def test_track_kinds() -> None:
    assert P.track_kind(_part("vocals", "lead vocal")) == "lead_vocal"
    assert P.track_kind(_part("vocals", "backing harmony")) == "backing_vocal"
    assert P.track_kind(_part("other", "gtr", 29)) == "guitar_dist"
    assert P.track_kind(_part("other", "gtr", 31, role="guitar")) == "guitar"
    assert P.track_kind(_part("drums", "hats", drum=True)) == "cymbals"
    assert P.track_kind(_part("other", "strings", 48)) == "pad"


def test_quantize_and_mixture_helpers() -> None:
    x = np.array([0.1, -0.3333333, 0.5 + 1e-9], dtype=np.float64)
    q = P.quantize24(x)
    assert q.dtype == np.float32
    assert np.all(np.abs(q.astype(np.float64) - x) <= 0.5 / 2**23)
    stems = {"a": np.ones((2, 3), np.float32), "b": np.full((2, 3), 0.5, np.float32)}
    np.testing.assert_array_equal(P.mixture_of(stems), np.full((2, 3), 1.5, np.float32))


def test_errors_are_stemtok_errors() -> None:
    with pytest.raises(StemtokError):
        P.produce([], seed=0)
    with pytest.raises(StemtokError):
        P.produce([(_part("bass", "b"), np.zeros((2, 100), np.float32))], seed=0)
    bad = np.full(100, math.nan, dtype=np.float32)
    with pytest.raises(StemtokError):
        P.produce([(_part("bass", "b"), bad)], seed=0)

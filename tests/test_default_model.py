"""The shipped default model through the features that use it: ``stemtok karaoke``, re-roll with
confidence (the separator and the editor's session) and the DAW bridge.

Every check is a property that holds for any default model folder (shapes, sums, seeds that give
other takes, confidence in (0, 1], exit codes), never a number from one model's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.cli import main
from engine.audio import read_audio, write_audio
from engine.constants import STEMS
from engine.errors import StemtokError
from engine.karaoke import karaoke_mix
from engine.runtime.lm_separator import LMSeparator
from engine.runtime.model import CONFIG_FILE, default_model_dir
from engine.runtime.separator import Stems

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo" / "demo.flac"
START_S, CLIP_S = 9.0, 2.5  # inside the demo's second sung phrase (demo.json: 8.96-11.61 s)
THREADS = 2
SUM_ATOL = 1e-4  # aligned stems add up to the mixture to float32 rounding
AUDIBLE = 1e-3  # -60 dBFS: another seed must change some stem by more than this


def _default_folder() -> Path | None:
    try:
        folder = default_model_dir()
    except StemtokError:
        return None
    return folder if (folder / CONFIG_FILE).is_file() else None


FOLDER = _default_folder()
pytestmark = [
    pytest.mark.skipif(
        FOLDER is None,
        reason=f"no default model ({CONFIG_FILE} in resources/models/default or $STEMTOK_MODEL)",
    ),
    pytest.mark.skipif(not DEMO.is_file(), reason="the demo song is not in this checkout"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``CLIP_S`` seconds of the demo from ``START_S``, as a 32-bit float WAV."""
    audio, rate = read_audio(DEMO)
    a = round(START_S * rate)
    path = tmp_path_factory.mktemp("default") / "clip.wav"
    return write_audio(path, audio[:, a : a + round(CLIP_S * rate)], rate, bit_depth="32f")


@pytest.fixture(scope="module")
def mix(clip: Path) -> tuple[np.ndarray, int]:
    return read_audio(clip)


@pytest.fixture(scope="module")
def sep() -> LMSeparator:
    return LMSeparator(FOLDER, "cpu", threads=THREADS)


@pytest.fixture(scope="module")
def greedy(sep: LMSeparator, mix: tuple[np.ndarray, int]) -> Stems:
    """The clip separated as ``stemtok`` does without ``--seed`` (greedy, aligned)."""
    return sep.separate(*mix)


def sums_to(stems: Stems | dict[str, np.ndarray], x: np.ndarray) -> None:
    assert list(stems) == list(STEMS)
    assert all(s.shape == x.shape and s.dtype == np.float32 for s in stems.values())
    np.testing.assert_allclose(sum(stems.values()), x, atol=SUM_ATOL)


def test_karaoke_with_the_default_model_is_the_mixture_without_its_vocals(
    clip: Path, mix: tuple[np.ndarray, int], greedy: Stems, tmp_path: Path
) -> None:
    out = tmp_path / "clip-karaoke.wav"
    args = ["karaoke", str(clip), "-o", str(out), "--quiet", "--device", "cpu"]
    assert main([*args, "--threads", str(THREADS)]) == 0  # no --model: the default
    got, rate = sf.read(out, always_2d=True, dtype="float32")
    x, clip_rate = mix
    assert rate == clip_rate and got.T.shape == x.shape
    np.testing.assert_allclose(got.T, karaoke_mix(greedy), atol=1e-6)
    np.testing.assert_allclose(got.T, x - greedy["vocals"], atol=SUM_ATOL)


def test_seeds_give_other_takes_that_still_sum_with_confidence(
    sep: LMSeparator, mix: tuple[np.ndarray, int]
) -> None:
    x, rate = mix
    one = sep.separate(x, rate, seed=1, confidence=True)
    two = sep.separate(x, rate, seed=2, confidence=True)
    for take in (one, two):
        sums_to(take, x)
        assert list(take.confidence) == list(STEMS) and take.confidence_rate > 0
        for c in take.confidence.values():
            assert c.ndim == 1 and c.size >= x.shape[1] / rate * take.confidence_rate
            assert np.all((c > 0) & (c <= 1))
    change = {n: float(np.abs(one[n] - two[n]).max()) for n in STEMS}
    assert max(change.values()) > AUDIBLE, f"seeds 1 and 2 give the same stems: {change}"


@pytest.fixture(scope="module")
def gui() -> Iterator[object]:
    """The offscreen QApplication (skips without PyQt6: the rest of this module needs no Qt)."""
    pytest.importorskip("qt_fixtures")  # skips itself without PyQt6
    from PyQt6.QtWidgets import QApplication

    yield QApplication.instance() or QApplication(["stemtok-tests"])


def test_editor_reroll_with_the_default_model(
    gui: object, sep: LMSeparator, clip: Path, tmp_path: Path
) -> None:
    from PyQt6.QtCore import QSettings
    from qt_fixtures import wait_until

    from app.editor.session import Session

    s = Session(lambda: sep, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    s.open_path(clip)
    wait_until(lambda: s.state == "loaded", timeout=60)
    before = s.bank.copy()
    assert s.reroll(0.8, 1.6, seed=2) is not None
    wait_until(lambda: s.take is not None, timeout=60)
    take = s.take
    assert take is not None and take.seed == 2 and s.state == "loaded"
    inside = slice(take.start, take.stop)
    np.testing.assert_array_equal(np.delete(s.bank, inside, axis=2), np.delete(before, inside, 2))
    # the span is separated again on its own (another context as well as another seed)
    assert not np.allclose(s.bank[:, :, inside], before[:, :, inside], atol=1e-5)
    np.testing.assert_allclose(s.bank.sum(0), s.mixture, atol=SUM_ATOL)  # the blend still sums
    assert all(np.all((c > 0) & (c <= 1)) for c in s.confidence.values())
    s.use_take(False)
    np.testing.assert_array_equal(s.bank, before)


def test_bridge_serves_the_default_model(
    sep: LMSeparator,
    mix: tuple[np.ndarray, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.bridge import paths
    from app.bridge.client import BridgeClient
    from app.bridge.server import BridgeConfig, BridgeServer

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    x, rate = mix
    region = np.ascontiguousarray(x[:, rate // 2 : 2 * rate])  # 1.5 s of the clip
    srv = BridgeServer(sep, BridgeConfig(port=0, socket_path=paths.default_socket_path()))
    srv.start()
    try:
        with BridgeClient(srv.socket_path) as c:
            stems = c.separate(region, rate)
    finally:
        srv.stop()
    sums_to(stems, region)
    here = sep.separate(region, rate)
    for name in STEMS:  # float32 over the wire: the same stems as the library's
        np.testing.assert_allclose(stems[name], here[name], atol=1e-6)

"""The Ardour script in Ardour itself: sessions made and read by ``ardour7-lua`` (Ardour's Lua
session tool on its dummy audio backend), separation by a real ``stemtok bridge`` (the shipped
teacher model), results checked in the saved and reopened session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.commands.daw import script_path, stemtok_command

ROOT = Path(__file__).resolve().parent.parent
LUA = shutil.which("ardour7-lua")
pytestmark = pytest.mark.skipif(
    LUA is None, reason="Ardour is not installed (Debian: apt-get install ardour, for ardour7-lua)"
)
RATE = 48_000
SONG_AT, SONG_FRAMES = 72_000, 96_000  # the song region: 2 s at 1.5 s
LONG_AT, LONG_FRAMES = 24_000, 192_000  # 4 s, longer than the bridge's limit below
MAX_MINUTES = "0.05"  # 3 s at 48 kHz
STEMS = ("vocals", "drums", "bass", "other")

MAKE_SESSION = """
AudioEngine:set_backend ("None (Dummy)", "", "")
create_session (DIR, "s", 48000)
for _, name in ipairs ({ "Song", "Long" }) do
  Session:new_audio_track (2, 2, nil, 1, name, ARDOUR.PresentationInfo.max_order,
    ARDOUR.TrackMode.Normal, true)
end
Session:save_state ("", false, false, false, false, false)
close_session ()
"""
RUN_SCRIPT = """
function ardour (t) end
AudioEngine:set_backend ("None (Dummy)", "", "")
load_session (DIR, "s")
dofile (SCRIPT)
factory (PARAMS) ()
collectgarbage ()
close_session ()
"""
INSPECT = """
AudioEngine:set_backend ("None (Dummy)", "", "")
load_session (DIR, "s")
local n = 0
local mem = { ARDOUR.DSP.DspShm (4096), ARDOUR.DSP.DspShm (4096) }
do
local routes = Session:get_tracks ()  -- held: Lua must not collect a list while iterating it
for route in routes:iter () do
  local track = route:to_track ()
  print (string.format ("TRACK\\t%s\\t%s", route:name (), tostring (route:muted ())))
  local regions = track:playlist ():region_list ()
  for r in regions:iter () do
    local rd = r:to_audioregion ():to_readable ()
    local ch, frames = rd:n_channels (), r:length ():samples ()
    n = n + 1
    local path = OUT .. "/" .. n .. ".f32"
    local f = io.open (path, "wb")
    local pos = 0
    while pos < frames do
      local k = math.min (4096, frames - pos)
      local data = {}
      for c = 1, ch do
        assert (rd:read (mem[c]:to_float (0), pos, k, c - 1) == k)
        data[c] = mem[c]:to_float (0):array ()
      end
      for i = 1, k do
        for c = 1, ch do f:write (string.pack ("<f", data[c][i])) end
      end
      pos = pos + k
    end
    f:close ()
    print (string.format ("REGION\\t%s\\t%s\\t%d\\t%d\\t%d\\t%s", route:name (), r:name (),
      r:position ():samples (), frames, ch, path))
  end
end
end
collectgarbage ()  -- no Ardour object may outlive the session
collectgarbage ()
close_session ()
"""


@dataclass(frozen=True)
class Region:
    track: str
    name: str
    position: int
    frames: int
    audio: np.ndarray  # [N, C] float32, what Ardour reads from the region


@dataclass(frozen=True)
class Session:
    tracks: dict[str, bool]  # name -> muted
    regions: list[Region]

    def on(self, track: str) -> list[Region]:
        return [r for r in self.regions if r.track == track]


def _lua_value(v: object) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{_lua_value(k)}] = {_lua_value(x)}" for k, x in v.items()) + "}"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def ardour(code: str, env: dict[str, str], **values: object) -> str:
    """Run Lua ``code`` in ardour7-lua with ``values`` as globals; its printed output."""
    head = "".join(f"{k} = {_lua_value(v)}\n" for k, v in values.items())
    script = Path(env["HOME"]) / "run.lua"
    script.write_text(head + code, encoding="utf-8")
    assert LUA is not None
    done = subprocess.run(
        [LUA, str(script)], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    return out


def inspect(session: Path, env: dict[str, str], out: Path) -> Session:
    out.mkdir(parents=True, exist_ok=True)
    tracks: dict[str, bool] = {}
    regions = []
    for line in ardour(INSPECT, env, DIR=session, OUT=out).splitlines():
        kind, *f = line.split("\t")
        if kind == "TRACK":
            tracks[f[0]] = f[1] == "true"
        elif kind == "REGION":
            ch = int(f[4])
            audio = np.fromfile(f[5], "<f4").reshape(-1, ch)
            regions.append(Region(f[0], f[1], int(f[2]), int(f[3]), audio))
    return Session(tracks, regions)


def send(env: dict[str, str], audio: np.ndarray, out: Path, *extra: str) -> Path:
    """``stemtok send`` of ``audio`` [N, C]: the folder with its WAV files."""
    out.mkdir(parents=True, exist_ok=True)
    region = out / "region.wav"
    sf.write(region, audio, RATE, subtype="FLOAT")
    cmd = [sys.executable, "-m", "app.cli", "send", str(region), "--out", str(out), "--quiet"]
    done = subprocess.run([*cmd, *extra], env=env, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return out / "region"


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a32, b32 = np.ascontiguousarray(a, "<f4"), np.ascontiguousarray(b, "<f4")
    return a32.shape == b32.shape and bool(np.array_equal(a32.view("<u4"), b32.view("<u4")))


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two float WAV excerpts of the demo song: 'song' (2 s) and 'long' (4 s)."""
    folder = tmp_path_factory.mktemp("songs")
    demo, rate = sf.read(ROOT / "resources" / "demo" / "demo.flac", dtype="float32")
    assert rate == RATE
    out = {}
    for name, start, frames in (("song", 5 * RATE, SONG_FRAMES), ("long", 12 * RATE, LONG_FRAMES)):
        out[name] = folder / f"{name}.wav"
        sf.write(out[name], demo[start : start + frames], RATE, subtype="FLOAT")
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private HOME, config and runtime folder (Ardour's settings, the bridge's token and
    state file)."""
    home = tmp_path_factory.mktemp("home")
    run = home / "run"
    run.mkdir(mode=0o700)
    e = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"))
    e["XDG_RUNTIME_DIR"] = str(run)
    e["PYTHONPATH"] = str(ROOT)
    return e


@pytest.fixture(scope="module")
def bridge(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``stemtok bridge`` with the teacher on a free port, regions up to 3 s."""
    cmd = [sys.executable, "-m", "app.cli", "bridge", "--model", "teacher", "--port", "0"]
    cmd += ["--no-socket", "--threads", "1", "--max-minutes", MAX_MINUTES]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "listening on" in line:
            break
    else:
        pytest.fail("the bridge did not start: " + "".join(seen))
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


def make_session(tmp: Path, env: dict[str, str], song: dict[str, Path]) -> Path:
    """A session by ardour7-lua with tracks Song and Long holding the song excerpts."""
    session = tmp / "s"
    ardour(MAKE_SESSION, env, DIR=session)
    cmd = [sys.executable, "-m", "app.cli", "daw", "ardour-place", str(session / "s.ardour")]
    cmd += ["--region", "Song", str(song["song"]), str(SONG_AT), "Song take"]
    cmd += ["--region", "Long", str(song["long"]), str(LONG_AT), "Long take"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return session


def run_script(session: Path, env: dict[str, str], **params: str) -> str:
    values = dict(params, command=stemtok_command())
    return ardour(RUN_SCRIPT, env, DIR=session, SCRIPT=script_path("ardour"), PARAMS=values)


def test_stems_of_a_region_are_four_tracks_in_place(
    tmp_path: Path, env: dict[str, str], song: dict[str, Path], bridge: object
) -> None:
    session = make_session(tmp_path, env, song)
    before = inspect(session, env, tmp_path / "before")
    (take,) = before.on("Song")
    assert (take.position, take.frames) == (SONG_AT, SONG_FRAMES)
    assert same_bits(take.audio, sf.read(song["song"], dtype="float32")[0])

    out = run_script(session, env, track="Song")
    assert "1 region(s) done" in out, out[-2000:]
    after = inspect(session, env, tmp_path / "after")
    ref = send(env, take.audio, tmp_path / "ref")
    total = np.zeros_like(take.audio)
    for stem in STEMS:
        (r,) = after.on(f"Song take {stem}")
        assert (r.position, r.frames, r.audio.shape[1]) == (SONG_AT, SONG_FRAMES, 2)
        assert same_bits(r.audio, sf.read(ref / f"{stem}.wav", dtype="float32")[0]), stem
        (file,) = (session / "stemtok").glob(f"*-{stem}.wav")
        assert file.read_bytes() == (ref / f"{stem}.wav").read_bytes()  # the float WAV, bit for bit
        total += r.audio
    error = np.sqrt(np.mean((total - take.audio) ** 2) / np.mean(take.audio**2))
    assert 20 * np.log10(error) < -60
    assert after.tracks["Song"] and not after.tracks["Long"]  # the source track is muted
    assert [r.name for r in after.on("Song")] == ["Song take"]
    assert len(after.on("Long")) == 1


def test_time_range_and_instrumental(
    tmp_path: Path, env: dict[str, str], song: dict[str, Path], bridge: object
) -> None:
    session = make_session(tmp_path, env, song)
    audio = sf.read(song["song"], dtype="float32")[0]
    start, end = SONG_AT + 24_000, SONG_AT + 60_000
    out = run_script(session, env, track="Song", range=f"{start}-{end}", mute="no")
    assert "1 region(s) done" in out, out[-2000:]
    out = run_script(session, env, track="Song", operation="instrumental")
    assert "1 region(s) done" in out, out[-2000:]
    after = inspect(session, env, tmp_path / "after")

    ref = send(env, audio[start - SONG_AT : end - SONG_AT], tmp_path / "range")
    for stem in STEMS:
        (r,) = after.on(f"Song take {stem}")
        assert (r.position, r.frames) == (start, end - start)
        assert same_bits(r.audio, sf.read(ref / f"{stem}.wav", dtype="float32")[0]), stem
    karaoke = send(env, audio, tmp_path / "karaoke", "--karaoke")
    (r,) = after.on("Song")  # the song region is gone, its instrumental in its place
    assert (r.name, r.position, r.frames) == ("Song take instrumental", SONG_AT, SONG_FRAMES)
    assert same_bits(r.audio, sf.read(karaoke / "instrumental.wav", dtype="float32")[0])
    assert not after.tracks["Song"]


def test_too_long_region_and_bridge_down_change_nothing(
    tmp_path: Path, env: dict[str, str], song: dict[str, Path], bridge: object
) -> None:
    session = make_session(tmp_path, env, song)
    saved = (session / "s.ardour").read_bytes()
    out = run_script(session, env, track="Long")
    (line,) = [x for x in out.splitlines() if x.startswith("stemtok: nothing")]
    assert "frames" in line or "long" in line, line
    assert (session / "s.ardour").read_bytes() == saved
    assert not (session / "stemtok").exists()

    down = dict(env, XDG_RUNTIME_DIR=str(tmp_path / "nobridge"))
    (tmp_path / "nobridge").mkdir(mode=0o700)
    out = run_script(session, down, track="Song")
    (line,) = [x for x in out.splitlines() if "not running" in x]
    assert line.startswith("stemtok: the stemtok bridge is not running"), line
    assert (session / "s.ardour").read_bytes() == saved
    after = inspect(session, env, tmp_path / "after")
    assert set(after.tracks) == {"Song", "Long"} and not any(after.tracks.values())

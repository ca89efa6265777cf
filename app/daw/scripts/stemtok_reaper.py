"""stemtok for REAPER: separate the selected item and import its four stems as new tracks.

UNTESTED HERE: this ReaScript has not been run. stemtok is developed on machines without REAPER,
so nothing in the test suite executes this file; it was written from the ReaScript API
documentation (function names and argument order), and the parts most likely to need a fix on a
given REAPER version are marked "CHECK". The bridge side it talks to is tested.

What it does
------------
1. Reads the audio of the active take of the first selected item through a take audio accessor
   (what the take plays: its source, offset, play rate and take envelopes, before take FX), at
   the source's sample rate and channel count.
2. Sends it to the running ``stemtok bridge`` with the Python client in ``app/bridge/client.py``
   (standard library only) and waits for the stems (REAPER's window is busy meanwhile: a few
   seconds for a short region).
3. Writes ``<project folder>/stemtok/<item>_<n>/{vocals,drums,bass,other}.wav`` (32-bit float,
   same rate, length and channels as the item) and puts each on a new track below the item's
   track, at the item's position, in one undo step.

Set up
------
- Start the bridge in a terminal: ``stemtok bridge`` (it prints where it listens).
- REAPER: Options > Preferences > Plug-ins > ReaScript: enable Python (3.8 or newer).
- Set STEMTOK_ROOT below (or the environment variable of that name) to the stemtok checkout or
  to the site-packages folder where stemtok is installed, then Actions > Load ReaScript.
"""

import array
import os
import sys

STEMTOK_ROOT = os.environ.get("STEMTOK_ROOT", os.path.expanduser("~/stemtok"))
STEMS = ["vocals", "drums", "bass", "other"]
MODE = "aligned"  # stems add up to the item; "generative" re-synthesises them
BLOCK_SECONDS = 1.0

if STEMTOK_ROOT not in sys.path:
    sys.path.insert(0, STEMTOK_ROOT)

from app.bridge.client import BridgeClient, BridgeError  # noqa: E402
from app.bridge.wav import write_wav_f32  # noqa: E402

# The RPR_* functions are injected by REAPER into this script's namespace.


def say(text):
    RPR_ShowConsoleMsg("stemtok: " + text + "\n")  # noqa: F821


def selected_take():
    if RPR_CountSelectedMediaItems(0) < 1:  # noqa: F821
        raise RuntimeError("select an audio item first")
    item = RPR_GetSelectedMediaItem(0, 0)  # noqa: F821
    take = RPR_GetActiveTake(item)  # noqa: F821
    if not take or RPR_TakeIsMIDI(take):  # noqa: F821
        raise RuntimeError("the selected item has no audio take")
    return item, take


def read_take(item, take):
    """-> (interleaved f32le bytes, rate, channels) of the item's whole length."""
    source = RPR_GetMediaItemTake_Source(take)  # noqa: F821
    rate = int(RPR_GetMediaSourceSampleRate(source)) or 48000  # noqa: F821
    channels = max(1, int(RPR_GetMediaSourceNumChannels(source)))  # noqa: F821
    length = RPR_GetMediaItemInfo_Value(item, "D_LENGTH")  # noqa: F821
    total = round(length * rate)
    accessor = RPR_CreateTakeAudioAccessor(take)  # noqa: F821
    out = array.array("f")
    try:
        block = int(BLOCK_SECONDS * rate)
        for start in range(0, total, block):
            n = min(block, total - start)
            # CHECK: the Python binding takes a list for the double* buffer and returns the
            # filled buffer as the last element of the result tuple; time 0 = item start.
            result = RPR_GetAudioAccessorSamples(  # noqa: F821
                accessor, rate, channels, start / rate, n, [0.0] * (n * channels)
            )
            out.extend(result[-1][: n * channels])
    finally:
        RPR_DestroyAudioAccessor(accessor)  # noqa: F821
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes(), rate, channels


def stem_folder(item):
    project = RPR_GetProjectPath("", 4096)[0] or os.path.expanduser("~")  # noqa: F821
    take = RPR_GetActiveTake(item)  # noqa: F821
    name = RPR_GetTakeName(take) or "item"  # noqa: F821
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    base = os.path.join(project, "stemtok")
    n = 1
    while os.path.exists(os.path.join(base, f"{safe}_{n}")):
        n += 1
    folder = os.path.join(base, f"{safe}_{n}")
    os.makedirs(folder)
    return folder


def import_stems(item, files):
    """One new track per stem below the item's track, each holding its stem at the item's start."""
    position = RPR_GetMediaItemInfo_Value(item, "D_POSITION")  # noqa: F821
    track = RPR_GetMediaItem_Track(item)  # noqa: F821
    index = int(RPR_GetMediaTrackInfo_Value(track, "IP_TRACKNUMBER"))  # noqa: F821  (1-based)
    cursor = RPR_GetCursorPosition()  # noqa: F821
    for k, (name, path) in enumerate(files):
        RPR_InsertTrackAtIndex(index + k, True)  # noqa: F821
        new = RPR_GetTrack(0, index + k)  # noqa: F821
        RPR_GetSetMediaTrackInfo_String(new, "P_NAME", "stemtok " + name, True)  # noqa: F821
        RPR_SetOnlyTrackSelected(new)  # noqa: F821
        RPR_SetEditCurPos(position, False, False)  # noqa: F821
        RPR_InsertMedia(path, 0)  # noqa: F821  (0: onto the selected track at the edit cursor)
    RPR_SetEditCurPos(cursor, False, False)  # noqa: F821


def main():
    item, take = selected_take()
    pcm, rate, channels = read_take(item, take)
    say(f"sending {len(pcm) / (4.0 * channels * rate):.1f} s, {channels} ch, {rate} Hz")
    with BridgeClient() as bridge:
        result = bridge.separate_pcm(pcm, rate, channels, stems=STEMS, mode=MODE, client="REAPER")
    say(f"stems back in {result.seconds:.2f} s of separation")
    folder = stem_folder(item)
    files = []
    for name in STEMS:
        path = os.path.join(folder, name + ".wav")
        write_wav_f32(path, result.stems[name], rate, channels)
        files.append((name, path))
    RPR_Undo_BeginBlock()  # noqa: F821
    try:
        import_stems(item, files)
    finally:
        RPR_Undo_EndBlock("stemtok: separate item into stems", -1)  # noqa: F821
        RPR_UpdateArrange()  # noqa: F821


try:
    main()
except (BridgeError, OSError, RuntimeError) as exc:
    RPR_ShowMessageBox(str(exc), "stemtok", 0)  # noqa: F821

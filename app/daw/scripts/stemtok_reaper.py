"""stemtok for REAPER: separate items into stem tracks, or replace them by their instrumental.

UNTESTED HERE: this ReaScript has not been run. stemtok is developed on machines without REAPER,
so nothing in the test suite executes this file; it was written from the ReaScript API
documentation (function names and argument order), and the parts most likely to need a fix on a
given REAPER version are marked "CHECK". The bridge side it talks to is tested, and the Ardour
script with the same features is tested inside Ardour (docs/daw/ardour.md).

What it does
------------
1. Picks what to separate: the selected items; else, with a time selection, the part of each
   item of the selected tracks inside it; else every item of the selected tracks.
2. Reads each part through a take audio accessor (what the take plays: its source, offset, play
   rate and take envelopes, before take FX), at the project's sample rate and the source's
   channel count, and sends it to the running ``stemtok bridge`` with the Python client in
   ``app/bridge/client.py`` (standard library only). REAPER's window is busy meanwhile.
3. OPERATION "stems": writes ``<project folder>/stemtok/<item>_<n>/{vocals,drums,bass,other}.wav``
   (32-bit float, same rate, length and channels as the part) and puts each on a new track
   "<item> vocals" etc. below the item's track, at the part's position; the source track is muted
   when MUTE is true. OPERATION "instrumental": writes ``instrumental.wav`` (drums + bass + other)
   and puts it in place of the item on its own track.
4. All parts are separated before anything changes: when the bridge is down or refuses a part,
   one message box says why and the project is left as it was. Changes are one undo step.

Set up
------
- ``stemtok daw install reaper`` copies this file to REAPER's Scripts folder with STEMTOK_ROOT
  filled in; then Actions > Show action list > New action > Load ReaScript.
- REAPER: Options > Preferences > Plug-ins > ReaScript: enable Python (3.8 or newer).
- Start the bridge in a terminal: ``stemtok bridge`` (it prints where it listens).
"""

import array
import os
import sys

STEMTOK_ROOT = os.environ.get("STEMTOK_ROOT", os.path.expanduser("~/stemtok"))
STEMS = ["vocals", "drums", "bass", "other"]
MODE = "aligned"  # stems add up to the item; "generative" re-synthesises them
OPERATION = "stems"  # or "instrumental": replace each item by drums + bass + other
MUTE = True  # mute the source track after "stems"
BLOCK_SECONDS = 1.0

if STEMTOK_ROOT not in sys.path:
    sys.path.insert(0, STEMTOK_ROOT)

from app.bridge.client import BridgeClient, BridgeError  # noqa: E402
from app.bridge.wav import write_wav_f32  # noqa: E402

# The RPR_* functions are injected by REAPER into this script's namespace.


def say(text):
    RPR_ShowConsoleMsg("stemtok: " + text + "\n")  # noqa: F821


class Part:
    """[start, end) seconds on the timeline of one item's active take."""

    def __init__(self, item, start=None, end=None):
        self.item = item
        self.take = RPR_GetActiveTake(item)  # noqa: F821
        self.track = RPR_GetMediaItem_Track(item)  # noqa: F821
        pos = RPR_GetMediaItemInfo_Value(item, "D_POSITION")  # noqa: F821
        length = RPR_GetMediaItemInfo_Value(item, "D_LENGTH")  # noqa: F821
        self.start = max(pos, start if start is not None else pos)
        self.end = min(pos + length, end if end is not None else pos + length)
        self.offset = self.start - pos  # seconds into the item
        self.whole = self.offset == 0 and self.end == pos + length
        self.name = RPR_GetTakeName(self.take) or "item"  # noqa: F821

    def usable(self):
        return self.take and not RPR_TakeIsMIDI(self.take) and self.end > self.start  # noqa: F821


def time_selection():
    # CHECK: the Python binding returns the arguments with the filled-in values.
    res = RPR_GetSet_LoopTimeRange(False, False, 0.0, 0.0, False)  # noqa: F821
    start, end = res[2], res[3]
    return (start, end) if end > start else (None, None)


def selected_parts():
    """Selected items; else the time selection on selected tracks; else selected tracks."""
    n = RPR_CountSelectedMediaItems(0)  # noqa: F821
    parts = [Part(RPR_GetSelectedMediaItem(0, i)) for i in range(n)]  # noqa: F821
    if not parts:
        start, end = time_selection()
        if OPERATION == "instrumental":
            start, end = None, None  # whole items only
        for t in range(RPR_CountSelectedTracks(0)):  # noqa: F821
            track = RPR_GetSelectedTrack(0, t)  # noqa: F821
            for i in range(RPR_CountTrackMediaItems(track)):  # noqa: F821
                parts.append(Part(RPR_GetTrackMediaItem(track, i), start, end))  # noqa: F821
    parts = [p for p in parts if p.usable()]
    if not parts:
        raise RuntimeError("select audio items, a time range on tracks, or tracks first")
    return parts


def read_part(part, rate):
    """-> (interleaved f32le bytes, channels) of the part, at ``rate``."""
    source = RPR_GetMediaItemTake_Source(part.take)  # noqa: F821
    channels = max(1, int(RPR_GetMediaSourceNumChannels(source)))  # noqa: F821
    total = round((part.end - part.start) * rate)
    accessor = RPR_CreateTakeAudioAccessor(part.take)  # noqa: F821
    out = array.array("f")
    try:
        block = int(BLOCK_SECONDS * rate)
        for start in range(0, total, block):
            n = min(block, total - start)
            # CHECK: the Python binding takes a list for the double* buffer and returns the
            # filled buffer as the last element of the result tuple; time 0 = item start.
            result = RPR_GetAudioAccessorSamples(  # noqa: F821
                accessor, rate, channels, part.offset + start / rate, n, [0.0] * (n * channels)
            )
            out.extend(result[-1][: n * channels])
    finally:
        RPR_DestroyAudioAccessor(accessor)  # noqa: F821
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes(), channels


def instrumental(stems):
    """drums + bass + other, sample by sample (interleaved f32le)."""
    mix = array.array("f", stems["drums"])
    for name in ("bass", "other"):
        other = array.array("f", stems[name])
        for i in range(len(mix)):
            mix[i] += other[i]
    return mix.tobytes()


def stem_folder(name):
    project = RPR_GetProjectPath("", 4096)[0] or os.path.expanduser("~")  # noqa: F821
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    base = os.path.join(project, "stemtok")
    n = 1
    while os.path.exists(os.path.join(base, f"{safe}_{n}")):
        n += 1
    folder = os.path.join(base, f"{safe}_{n}")
    os.makedirs(folder)
    return folder


def separate_all(parts, rate):
    """Every part through the bridge before anything changes: [{name: path}] per part."""
    names = ["instrumental"] if OPERATION == "instrumental" else STEMS
    asked = ["drums", "bass", "other"] if OPERATION == "instrumental" else STEMS
    results = []
    with BridgeClient() as bridge:
        for k, part in enumerate(parts):
            pcm, channels = read_part(part, rate)
            say(f"separating {part.name} ({k + 1}/{len(parts)})")
            res = bridge.separate_pcm(pcm, rate, channels, stems=asked, mode=MODE, client="REAPER")
            stems = {"instrumental": instrumental(res.stems)} if names != STEMS else res.stems
            folder = stem_folder(part.name)
            files = {}
            for name in names:
                files[name] = os.path.join(folder, name + ".wav")
                write_wav_f32(files[name], stems[name], rate, channels)
            results.append(files)
    return results


def insert_file(track, path, position):
    RPR_SetOnlyTrackSelected(track)  # noqa: F821
    RPR_SetEditCurPos(position, False, False)  # noqa: F821
    RPR_InsertMedia(path, 0)  # noqa: F821  (0: onto the selected track at the edit cursor)


def apply(part, files):
    if OPERATION == "instrumental":
        RPR_DeleteTrackMediaItem(part.track, part.item)  # noqa: F821
        insert_file(part.track, files["instrumental"], part.start)
        return
    index = int(RPR_GetMediaTrackInfo_Value(part.track, "IP_TRACKNUMBER"))  # noqa: F821
    for k, name in enumerate(STEMS):
        RPR_InsertTrackAtIndex(index + k, True)  # noqa: F821
        new = RPR_GetTrack(0, index + k)  # noqa: F821
        RPR_GetSetMediaTrackInfo_String(new, "P_NAME", f"{part.name} {name}", True)  # noqa: F821
        insert_file(new, files[name], part.start)
    if MUTE:
        RPR_SetMediaTrackInfo_Value(part.track, "B_MUTE", 1)  # noqa: F821


def main():
    parts = selected_parts()
    rate = int(RPR_GetSetProjectInfo(0, "PROJECT_SRATE", 0, False)) or 48000  # noqa: F821
    results = separate_all(parts, rate)
    cursor = RPR_GetCursorPosition()  # noqa: F821
    RPR_Undo_BeginBlock()  # noqa: F821
    try:
        for k, part in enumerate(parts):
            apply(part, results[k])
    finally:
        RPR_SetEditCurPos(cursor, False, False)  # noqa: F821
        RPR_Undo_EndBlock(f"stemtok: {OPERATION}", -1)  # noqa: F821
        RPR_UpdateArrange()  # noqa: F821
    say(f"{len(parts)} item(s) done")


try:
    main()
except BridgeError as exc:
    if exc.code == "connect":
        text = "the stemtok bridge is not running: start it with 'stemtok bridge'"
    else:
        text = f"nothing was changed: {exc.message}"
    RPR_ShowMessageBox(text, "stemtok", 0)  # noqa: F821
except (OSError, RuntimeError) as exc:
    RPR_ShowMessageBox(f"nothing was changed: {exc}", "stemtok", 0)  # noqa: F821

"""Place audio files as regions on tracks of a saved Ardour 7 session (the ``.ardour`` XML).

Ardour's Lua outside the editor (``ardour7-lua``) has no way to bring a file into a session: its
bindings offer neither import nor a source factory. The stemtok Ardour script therefore, when it
runs without the editor, creates the tracks through Ardour's API, saves and closes the session,
lets :func:`place_regions` add the regions to the saved file, and opens the session again. In
the editor the script uses Ardour's own embed instead.

A placed file is *embedded* (Ardour reads it where it is, like Import with "copy files to
session" off): one mono source per channel of the file, a whole-file region, and a region on
the track's playlist at ``position`` (samples) with the file's length. The session's sample rate
must be the file's (Ardour would play it at the wrong speed otherwise).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.atomic import write_bytes
from engine.errors import StemtokError

#: Ardour 7's superclock rate, used when a session does not state its own.
SUPERCLOCKS_PER_SECOND = 282_240_000

_REGION = {  # the attributes Ardour 7 writes for a plain audio region, besides the ones set here
    "muted": "0",
    "opaque": "1",
    "locked": "0",
    "video-locked": "0",
    "automatic": "0",
    "import": "0",
    "external": "1",
    "sync-marked": "0",
    "left-of-split": "0",
    "right-of-split": "0",
    "hidden": "0",
    "position-locked": "0",
    "valid-transients": "0",
    "start": "a0",
    "sync-position": "a0",
    "ancestral-start": "a0",
    "ancestral-length": "a0@a0",
    "stretch": "1",
    "shift": "1",
    "layering-index": "0",
    "tags": "",
    "contents": "0",
    "envelope-active": "0",
    "default-fade-in": "0",
    "default-fade-out": "0",
    "fade-in-active": "1",
    "fade-out-active": "1",
    "scale-amplitude": "1",
    "type": "audio",
    "first-edit": "nothing",
}


@dataclass(frozen=True)
class Placement:
    """``path`` (an audio file) as a region called ``name`` on track ``track`` at ``position``
    samples from the session start."""

    track: str
    path: Path
    position: int
    name: str


def place_regions(session_file: str | Path, placements: Sequence[Placement]) -> None:
    """Add each placement to ``session_file`` (a closed session; rewritten atomically, or left
    as it was when any placement is refused)."""
    file = Path(session_file)
    try:
        tree = ET.parse(file)
    except (OSError, ET.ParseError) as exc:
        raise StemtokError(f"{file}: not a readable Ardour session ({exc})") from None
    session = _Session(file, tree.getroot())
    for p in placements:
        session.place(p)
    session.root.set("id-counter", str(session.next_id))
    ET.indent(tree, space="  ")
    write_bytes(file, ET.tostring(session.root, encoding="UTF-8", xml_declaration=True))


class _Session:
    def __init__(self, file: Path, root: ET.Element) -> None:
        if root.tag != "Session":
            raise StemtokError(f"{file}: not an Ardour session")
        self.file, self.root = file, root
        self.rate = int(root.get("sample-rate", "0"))
        tempo = root.find("TempoMap")
        clocks = int(tempo.get("superclocks-per-second", 0) if tempo is not None else 0)
        clocks = clocks or SUPERCLOCKS_PER_SECOND
        if self.rate <= 0 or clocks % self.rate:
            raise StemtokError(f"{file}: sample rate {self.rate} is not one Ardour 7 supports")
        self.scale = clocks // self.rate  # superclocks per sample
        self.next_id = int(root.get("id-counter", "0")) + 1

    def _new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id - 1)

    def _section(self, tag: str) -> ET.Element:
        node = self.root.find(tag)
        if node is None:
            node = ET.SubElement(self.root, tag)
        return node

    def playlist(self, track: str) -> ET.Element:
        routes = [r for r in self.root.iter("Route") if r.get("name") == track]
        if len(routes) != 1 or not routes[0].get("audio-playlist"):
            raise StemtokError(f"{self.file}: no single audio track named {track!r}")
        pid = routes[0].get("audio-playlist")
        for pl in self._section("Playlists").findall("Playlist"):
            if pl.get("id") == pid:
                return pl
        raise StemtokError(f"{self.file}: the playlist of track {track!r} is missing")

    def place(self, p: Placement) -> None:
        from engine.audio import probe

        info = probe(p.path)
        if info.rate != self.rate:
            raise StemtokError(
                f"{p.path}: {info.rate} Hz, the session runs at {self.rate} Hz (resample it first)"
            )
        if p.position < 0:
            raise StemtokError(f"{p.name}: a position before the session start")
        playlist = self.playlist(p.track)
        path = str(p.path.resolve())
        sources = [self._source(path, c, p.position) for c in range(info.channels)]
        attrs = dict(_REGION, channels=str(info.channels))
        for c, sid in enumerate(sources):
            attrs[f"source-{c}"] = attrs[f"master-source-{c}"] = sid
        span = f"a{info.frames * self.scale}"
        whole = dict(attrs, name=p.path.stem, id=self._new_id(), length=f"{span}@a0")
        ET.SubElement(self._section("Regions"), "Region", whole | {"whole-file": "1"})
        where = f"{span}@a{p.position * self.scale}"
        placed = dict(attrs, name=p.name, id=self._new_id(), length=where, **{"whole-file": "0"})
        ET.SubElement(playlist, "Region", placed)

    def _source(self, path: str, channel: int, position: int) -> str:
        sid = self._new_id()
        ET.SubElement(
            self._section("Sources"),
            "Source",
            {
                "name": path,
                "type": "audio",
                "flags": "",
                "id": sid,
                "natural-position": f"a{position * self.scale}",
                "channel": str(channel),
                "origin": path,
                "gain": "1",
            },
        )
        return sid

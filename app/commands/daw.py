"""``stemtok daw``: install the DAW scripts that talk to the bridge; place files in Ardour sessions."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from engine.errors import StemtokError

EXAMPLES = """\
Examples:
  stemtok daw install ardour             copy the Ardour action script to ~/.config/ardour7/scripts
  stemtok daw install reaper             copy the ReaScript to REAPER's Scripts folder
  stemtok daw install ardour --overwrite   replace a copy you changed
  stemtok daw ardour-place S/S.ardour --region "Song vocals" vocals.wav 96000 "Song vocals"
"""
SCRIPTS = {"ardour": "stemtok_ardour.lua", "reaper": "stemtok_reaper.py"}
#: The line of the Ardour script whose default command the installer fills in.
ARDOUR_COMMAND = '["command"]   = { title = "Command that runs stemtok", default = "stemtok" },'


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "daw",
        help="install the DAW scripts; place files in Ardour sessions",
        description="Install the scripts that send regions from a DAW to 'stemtok bridge' "
        "(Ardour: an editor action; REAPER: a ReaScript), or add audio files as regions to a "
        "saved Ardour session (what the Ardour script does when it runs without the editor).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub2 = p.add_subparsers(dest="daw_command", metavar="ACTION", required=True)
    i = sub2.add_parser("install", help="copy a DAW script to where the DAW looks for it")
    i.add_argument("daw", choices=sorted(SCRIPTS), help="which DAW")
    i.add_argument("--dir", type=Path, metavar="DIR", help="scripts folder (default: the DAW's)")
    i.add_argument("--overwrite", action="store_true", help="replace a copy that differs")
    i.set_defaults(func=run_install)
    a = sub2.add_parser(
        "ardour-place",
        help="add audio files as regions to tracks of a closed Ardour session",
        description="Embed audio files (same rate as the session) as regions on existing "
        "tracks of a saved Ardour 7 session that is not open in Ardour.",
    )
    a.add_argument("session", type=Path, metavar="SESSION.ardour")
    a.add_argument(
        "--region",
        nargs=4,
        action="append",
        required=True,
        metavar=("TRACK", "FILE", "POSITION", "NAME"),
        help="FILE as region NAME on track TRACK at POSITION samples (repeatable)",
    )
    a.set_defaults(func=run_place)


def script_path(daw: str) -> Path:
    """The shipped script for ``daw``."""
    return Path(__file__).resolve().parent.parent / "daw" / "scripts" / SCRIPTS[daw]


def default_dir(daw: str) -> Path:
    """Where ``daw`` looks for user scripts."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    mac = sys.platform == "darwin"
    if daw == "ardour":
        base = Path.home() / "Library" / "Preferences" / "Ardour7" if mac else config / "ardour7"
        return base / "scripts"
    if mac:
        return Path.home() / "Library" / "Application Support" / "REAPER" / "Scripts"
    return config / "REAPER" / "Scripts"


def stemtok_command() -> str:
    """A shell command that runs this stemtok from any folder (DAWs start scripts elsewhere)."""
    root = Path(__file__).resolve().parent.parent.parent
    return f"PYTHONPATH={shlex.quote(str(root))} {shlex.quote(sys.executable)} -m app"


def script_text(daw: str) -> str:
    """The script as installed: the Ardour one runs this stemtok by default."""
    text = script_path(daw).read_text(encoding="utf-8")
    if daw == "ardour":
        filled = ARDOUR_COMMAND.replace('"stemtok" }', f"{_lua_string(stemtok_command())} }}")
        if ARDOUR_COMMAND not in text:
            raise StemtokError(f"{script_path(daw)}: the command parameter line is missing")
        text = text.replace(ARDOUR_COMMAND, filled)
    if daw == "reaper":
        root = Path(__file__).resolve().parent.parent.parent
        text = text.replace('os.path.expanduser("~/stemtok")', repr(str(root)))
    return text


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_install(args: argparse.Namespace) -> int:
    from engine.atomic import write_text

    text = script_text(args.daw)
    target = (args.dir or default_dir(args.daw)) / SCRIPTS[args.daw]
    if target.exists():
        if target.read_text(encoding="utf-8", errors="replace") == text:
            print(f"{target}: already installed, unchanged")
            return 0
        if not args.overwrite:
            raise StemtokError(
                f"{target}: exists and differs from this stemtok's script "
                "(pass --overwrite to replace it)"
            )
    write_text(target, text, mode=0o644)
    print(f"installed {target}")
    print(_NEXT[args.daw])
    return 0


_NEXT = {
    "ardour": "In Ardour: Edit > Lua Scripts > Script Manager > Action Scripts > Add/Set, pick "
    "'stemtok: Separate into stems'. It runs stemtok as a program: where Ardour has the "
    "preference 'Sandbox all Lua scripts' (newer than 7.3), it must stay off.",
    "reaper": "In REAPER: Actions > Show action list > New action > Load ReaScript, pick "
    "stemtok_reaper.py (ReaScript Python must be enabled in Preferences > Plug-ins > ReaScript).",
}


def run_place(args: argparse.Namespace) -> int:
    from app.daw.ardour_session import Placement, place_regions

    placements = []
    for track, file, position, name in args.region:
        try:
            at = int(position)
        except ValueError:
            raise StemtokError(f"--region {track}: POSITION must be whole samples") from None
        placements.append(Placement(track, Path(file), at, name))
    place_regions(args.session, placements)
    print(f"{args.session}: {len(placements)} region(s) placed")
    return 0

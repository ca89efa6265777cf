"""The ``stemtok`` command line: ``main(argv=None)`` so tests call it directly.

Each command lives in ``app/commands/<name>.py`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` to ``run(args) -> int``. User errors (:class:`StemtokError`) are
printed as one line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from app.commands import register_all
from engine import __version__
from engine.errors import StemtokError

DESCRIPTION = """\
Split music into four stems (vocals, drums, bass, other) with a generative token model.

Examples:
  stemtok info song.flac                 what a file holds (format, rate, length, levels)
  stemtok separate song.mp3 -o stems/    four stems into stems/song/
  stemtok data synth --minutes 10 --out data/synth
  stemtok <command> --help               more about one command
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help wrapped to the terminal (``COLUMNS``): prose lines of descriptions and epilogs are
    filled; indented lines (examples) keep their layout, and one too long for the terminal puts
    its explanation on the next line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        width = max(width, 40)
        return "\n".join(
            out for line in _paragraphs(text, width) for out in _wrap(line, width, indent)
        )


def _paragraphs(text: str, width: int) -> list[str]:
    """The lines of ``text``, with each run of unindented lines joined into one where one of
    them is longer than ``width`` (so the run is filled as one paragraph)."""
    lines: list[str] = []
    run: list[str] = []
    for row in [*text.splitlines(), ""]:
        if row.strip() and not row[0].isspace():
            run.append(row)
            continue
        if len(run) > 1 and max(map(len, run)) > width:
            run = [" ".join(r.strip() for r in run)]
        lines += [*run, row]
        run = []
    return lines[:-1]


def _wrap(line: str, width: int, indent: str) -> list[str]:
    if not line.strip():
        return [""]
    if len(indent + line) <= width:
        return [indent + line]
    lead = indent + line[: len(line) - len(line.lstrip())]
    fill = functools.partial(
        textwrap.wrap, width=width, break_on_hyphens=False, break_long_words=False
    )
    if lead == indent:  # prose
        return fill(line.strip(), initial_indent=lead, subsequent_indent=lead)
    example = re.match(r"(\S.*?)\s{2,}(\S.*)$", line.strip())  # "command     what it does"
    command, what = example.groups() if example else (line.strip(), "")
    out = fill(command, initial_indent=lead, subsequent_indent=lead + "  ")
    return out + fill(what, initial_indent=lead + "    ", subsequent_indent=lead + "    ")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line plus a hint, exit code 2, and whose
    help is wrapped to the terminal (:class:`HelpFormatter`, for every command)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stemtok", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"stemtok {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    register_all(sub)
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="stemtok: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = get_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except StemtokError as exc:
        print(f"stemtok: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("stemtok: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"stemtok: internal error: {type(exc).__name__}: {exc} "
            "(please report it; --debug shows the traceback)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())

"""The ``stemtok`` command line: ``main(argv=None)`` so tests call it directly.

Each command lives in ``app/commands/<name>.py`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` to ``run(args) -> int``. User errors (:class:`StemtokError`) are
printed as one line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from engine import __version__
from engine.errors import StemtokError

COMMANDS = (
    "separate",
    "karaoke",
    "editor",
    "bridge",
    "data",
    "train",
    "export",
    "eval",
    "bench",
    "info",
)

DESCRIPTION = """\
Split music into four stems (vocals, drums, bass, other) with a generative token model.

Examples:
  stemtok info song.flac                 what a file holds (format, rate, length, levels)
  stemtok separate song.mp3 -o stems/    four stems into stems/song/
  stemtok data synth --minutes 10 --out data/synth
  stemtok <command> --help               more about one command
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line plus a hint, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stemtok",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stemtok {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    from app.commands import register_all

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

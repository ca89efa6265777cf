"""User-facing errors.

Every failure a user can cause (a missing file, a corrupt file, a bad option) is raised as a
:class:`StemtokError` whose message is one line that says what is wrong and, where it helps, what to
do. The CLI prints it on stderr and exits non-zero; it never shows a traceback for these.
"""


def install_hint(extras: str) -> str:
    """How to add the optional packages of ``extras`` ("train", "eval"): stemtok is installed
    from its checkout, not from PyPI, so the hint names the checkout's environment and extras."""
    return f"in the stemtok checkout: .venv/bin/pip install '.[{extras}]'"


class StemtokError(Exception):
    """An error caused by input or environment, with a one-line message for the user."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class AudioError(StemtokError):
    """An audio file could not be read or written."""

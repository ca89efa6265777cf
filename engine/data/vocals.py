"""Vocal stems for the data factory: one entry point over our singer and Festival.

``render_vocals(part, duration, seed=..)`` sings a vocal :class:`~engine.data.song.Part` at
48 kHz. With ``engine="auto"`` each song is drawn (from its seed) to be sung by Festival's
singing mode or by our own synthesizer, so the training data holds both kinds of voice;
Festival is used only when it is installed and the part lies within its reach.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from engine.constants import MODEL_RATE
from engine.data import festival, singer
from engine.data.song import Part
from engine.errors import StemtokError

F32 = npt.NDArray[np.float32]

ENGINES = ("auto", "singer", "festival")
FESTIVAL_SHARE = 0.5  # fraction of songs "auto" gives to Festival when it can sing them
_CHOICE_STREAM = 0x766F63  # keeps the engine draw apart from the singers' own random streams

log = logging.getLogger(__name__)


def choose_engine(part: Part, seed: int) -> str:
    """The engine "auto" uses for this part and seed: "festival" or "singer"."""
    draw = np.random.default_rng([seed, _CHOICE_STREAM]).random()
    if draw < FESTIVAL_SHARE and festival.within_reach(part) and festival.festival_available():
        return "festival"
    return "singer"


def render_vocals(
    part: Part, duration: float, *, rate: int = MODEL_RATE, seed: int, engine: str = "auto"
) -> F32:
    """Sing ``part`` for ``duration`` seconds. Returns ``[N]`` float32 mono at ``rate``.

    Parameters
    ----------
    part
        A vocal part: notes with one ``lyric`` syllable each, ``voice`` "male" or "female".
    duration
        Output length in seconds (``N = round(duration * rate)``).
    rate
        Output sample rate (Hz).
    seed
        Seeds the engine draw and everything random in the voice.
    engine
        "singer" (ours, always available), "festival" (raises StemtokError when Festival is
        missing or fails) or "auto" (drawn per seed; falls back to the singer if Festival
        fails).
    """
    if engine not in ENGINES:
        raise StemtokError(f"unknown singing engine {engine!r}; choose one of {', '.join(ENGINES)}")
    pick = choose_engine(part, seed) if engine == "auto" else engine
    if pick == "festival":
        try:
            return festival.sing_festival(part, duration, rate=rate, seed=seed)
        except StemtokError as exc:
            if engine == "festival":
                raise
            log.warning(
                "festival could not sing %r (%s); using the built-in singer", part.name, exc
            )
    return singer.sing(part, duration, rate=rate, seed=seed)

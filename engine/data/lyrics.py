"""Lyrics for generator version 2: our own pop lines (written for stemtok, no quoted lyrics).

Each line is a list of syllables (``-`` joins the syllables of one word). :func:`relyric`
gives each phrase of a lead vocal (notes grouped at rests) a line with enough syllables (cut
at the phrase's length, filled with "oh"/"yeah" when short); phrases with the same rhythm and
tune get the same line, so repeated choruses sing the same words.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.data.song import Note, Part

LINES: tuple[str, ...] = (
    "we were run-ning through the mid-night rain",
    "hold me clo-ser till the mor-ning light",
    "e-very sto-ry leads me back to you",
    "turn the ra-di-o up and let it play",
    "I can feel it in the air to-night",
    "all the lights are bur-ning in the ci-ty",
    "don't let go don't let go of my hand",
    "we can make it if we try a-gain",
    "ne-ver look-ing back a-gain",
    "you and me be-neath a sil-ver sky",
    "ta-king all the time we need",
    "danc-ing in the dark a-lone",
    "say my name and I'll be there",
    "gol-den sum-mer on the road",
    "I was lost un-til you found me",
    "heart is bea-ting like a drum",
    "wai-ting on a sig-nal from the stars",
    "we're a-live we're a-live to-night",
    "call me when the mu-sic fades",
    "e-cho-es of a fire in the night",
    "ri-ding on the wa-ves of the sea",
    "break-ing all the walls we made",
    "ev-ery sin-gle word you say",
    "lift me high-er hold me near",
    "we keep chas-ing the sun",
    "so-me-thing in your eyes to-night",
    "float-ing on a dream we had",
    "o-pen up your heart and see",
)
FILLERS: tuple[str, ...] = ("oh", "yeah", "oh", "ah")
ADLIBS: tuple[str, ...] = ("yeah", "hey", "oh", "uh", "come on", "woo", "ah")
PHRASE_GAP = 0.3  # seconds of rest that end a phrase (as the singer groups them)


def syllables(line: str) -> list[str]:
    """``"run-ning home"`` -> ``["run", "ning", "home"]``."""
    return [s for word in line.split() for s in word.split("-") if s]


def phrases(notes: tuple[Note, ...]) -> list[list[int]]:
    """Indices of the notes of each phrase (sorted by start, split at rests)."""
    order = sorted(range(len(notes)), key=lambda i: notes[i].start)
    out: list[list[int]] = []
    end = -1e9
    for i in order:
        if not out or notes[i].start - end >= PHRASE_GAP:
            out.append([])
        out[-1].append(i)
        end = notes[i].start + notes[i].duration
    return out


def relyric(part: Part, rng: np.random.Generator) -> Part:
    """``part`` with a lyric line per phrase (same tune and rhythm, same words)."""
    notes = list(part.notes)
    memory: dict[tuple[tuple[float, int], ...], list[str]] = {}
    for phrase in phrases(part.notes):
        t0 = notes[phrase[0]].start
        key = tuple((round((notes[i].start - t0) * 20), notes[i].pitch) for i in phrase)
        words = memory.get(key)
        if words is None:
            words = syllables(str(LINES[int(rng.integers(len(LINES)))]))
            words = (words + [str(rng.choice(FILLERS)) for _ in phrase])[: len(phrase)]
            memory[key] = words
        for i, word in zip(phrase, words, strict=True):
            notes[i] = replace(notes[i], lyric=word)
    return replace(part, notes=tuple(notes))

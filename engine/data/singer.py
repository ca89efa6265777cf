"""Our own singing synthesizer: source-filter synthesis of a vocal part at full bandwidth.

How a part becomes audio (all vectorised numpy/scipy, one core, much faster than real time):

1. The notes are cleaned (sorted, overlaps cut) and grouped into phrases at rests.
2. Each note's ``lyric`` is turned into phones by a small letter-to-sound rule set; the phones
   are laid out on the note (consonants at their natural lengths, vowels take the rest).
3. Control tracks at the frame rate (``rate / HOP``): pitch with portamento, onset scoops,
   delayed vibrato, drift and jitter; formant targets F1..F5 (male or female vowel sets),
   smoothed so they glide between phones; voicing, aspiration and frication levels; dynamics
   from velocity and phrase shape.
4. Two excitations at the sample rate: a band-limited glottal pulse train (wavetables of a
   Rosenberg pulse, harmonics up to ~21 kHz) with shimmer, and white noise gated by the glottal
   cycle.
5. Both go through time-varying spectral envelopes in the STFT domain (formant resonances with
   an upper-band continuation, spectral tilt that follows loudness, nasal notches, fricative
   shapes); plosive bursts and breath intakes are added in the time domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from engine.constants import MODEL_RATE
from engine.data.song import Note, Part

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
C64 = npt.NDArray[np.complexfloating[Any, Any]]

HOP = 256  # samples between control frames (5.3 ms at 48 kHz)
N_FFT = 1024  # STFT size of the spectral shaping
PHRASE_GAP = 0.3  # a rest at least this long (s) ends a phrase
PEAK = 0.5  # output peak (-6 dBFS); the mixer sets stem levels

# ---------------------------------------------------------------------------------------------
# Phonetics: formant targets (Peterson & Barney averages, F1..F3 in Hz) and consonant classes
# ---------------------------------------------------------------------------------------------

VOWELS_MALE: dict[str, tuple[float, float, float]] = {
    "IY": (270, 2290, 3010),
    "IH": (390, 1990, 2550),
    "EH": (530, 1840, 2480),
    "AE": (660, 1720, 2410),
    "AA": (730, 1090, 2440),
    "AO": (570, 840, 2410),
    "UH": (440, 1020, 2240),
    "UW": (300, 870, 2240),
    "AH": (640, 1190, 2390),
    "ER": (490, 1350, 1690),
    "AX": (500, 1500, 2500),
}
VOWELS_FEMALE: dict[str, tuple[float, float, float]] = {
    "IY": (310, 2790, 3310),
    "IH": (430, 2480, 3070),
    "EH": (610, 2330, 2990),
    "AE": (860, 2050, 2850),
    "AA": (850, 1220, 2810),
    "AO": (590, 920, 2710),
    "UH": (470, 1160, 2680),
    "UW": (370, 950, 2670),
    "AH": (760, 1400, 2780),
    "ER": (500, 1640, 1960),
    "AX": (580, 1700, 2900),
}
DIPHTHONGS = {
    "AY": ("AA", "IH"),
    "AW": ("AA", "UH"),
    "EY": ("EH", "IY"),
    "OW": ("AO", "UH"),
    "OY": ("AO", "IY"),
}
UPPER_FORMANTS = {"male": (3400.0, 4400.0), "female": (4100.0, 5100.0)}
BANDWIDTHS = {
    "male": (90.0, 110.0, 140.0, 200.0, 260.0),
    "female": (110.0, 130.0, 170.0, 250.0, 300.0),
}


@dataclass(frozen=True)
class Consonant:
    """How one consonant sounds: class, place (formant locus), voicing and noise."""

    kind: str  # "plosive", "fricative", "affricate", "nasal", "liquid", "aspirate"
    locus: tuple[float, float, float]  # male F1..F3 the formants move towards
    voiced: bool
    duration: float  # nominal seconds
    noise: str = ""  # fricative shape name ("s", "sh", "f", "th")
    noise_db: float = -60.0  # frication level relative to a vowel
    burst: str = ""  # plosive burst band ("p", "t", "k")
    zero: float = 0.0  # nasal antiresonance (Hz)


_LAB, _ALV, _PAL, _VEL = (250, 900, 2200), (300, 1700, 2600), (300, 1900, 2500), (300, 2000, 2400)
CONSONANTS: dict[str, Consonant] = {
    "P": Consonant("plosive", _LAB, False, 0.075, burst="p"),
    "B": Consonant("plosive", _LAB, True, 0.05, burst="p"),
    "T": Consonant("plosive", _ALV, False, 0.075, burst="t"),
    "D": Consonant("plosive", _ALV, True, 0.05, burst="t"),
    "K": Consonant("plosive", _VEL, False, 0.08, burst="k"),
    "G": Consonant("plosive", _VEL, True, 0.055, burst="k"),
    "CH": Consonant("affricate", _PAL, False, 0.1, "sh", -8.0, burst="t"),
    "JH": Consonant("affricate", _PAL, True, 0.08, "sh", -14.0, burst="t"),
    "S": Consonant("fricative", _ALV, False, 0.1, "s", -6.0),
    "Z": Consonant("fricative", _ALV, True, 0.07, "s", -14.0),
    "SH": Consonant("fricative", _PAL, False, 0.1, "sh", -6.0),
    "ZH": Consonant("fricative", _PAL, True, 0.07, "sh", -14.0),
    "F": Consonant("fricative", _LAB, False, 0.08, "f", -18.0),
    "V": Consonant("fricative", _LAB, True, 0.06, "f", -22.0),
    "TH": Consonant("fricative", (300, 1500, 2600), False, 0.08, "th", -20.0),
    "DH": Consonant("fricative", (300, 1500, 2600), True, 0.05, "th", -24.0),
    "H": Consonant("aspirate", (0, 0, 0), False, 0.06),
    "M": Consonant("nasal", (260, 900, 2200), True, 0.065, zero=1000.0),
    "N": Consonant("nasal", (260, 1700, 2600), True, 0.06, zero=1600.0),
    "NG": Consonant("nasal", (280, 2000, 2400), True, 0.06, zero=3000.0),
    "L": Consonant("liquid", (360, 1200, 2700), True, 0.055),
    "R": Consonant("liquid", (350, 1100, 1600), True, 0.055),
    "W": Consonant("liquid", (300, 700, 2200), True, 0.05),
    "Y": Consonant("liquid", (280, 2200, 2950), True, 0.045),
}
NOISE_SHAPES = ("none", "s", "sh", "f", "th", "breath")

# ---------------------------------------------------------------------------------------------
# Letter to sound: enough English spelling rules to turn a sung syllable into phones
# ---------------------------------------------------------------------------------------------

_WORDS: dict[str, tuple[str, ...]] = {
    "the": ("DH", "AX"),
    "a": ("AX",),
    "i": ("AY",),
    "you": ("Y", "UW"),
    "your": ("Y", "AO", "R"),
    "love": ("L", "AH", "V"),
    "come": ("K", "AH", "M"),
    "some": ("S", "AH", "M"),
    "one": ("W", "AH", "N"),
    "done": ("D", "AH", "N"),
    "of": ("AH", "V"),
    "to": ("T", "UW"),
    "do": ("D", "UW"),
    "who": ("H", "UW"),
    "was": ("W", "AH", "Z"),
    "what": ("W", "AH", "T"),
    "are": ("AA", "R"),
    "eye": ("AY",),
    "oh": ("OW",),
    "ooh": ("UW",),
    "ah": ("AA",),
    "now": ("N", "AW"),
    "how": ("H", "AW"),
    "down": ("D", "AW", "N"),
    "town": ("T", "AW", "N"),
    "heart": ("H", "AA", "R", "T"),
    "there": ("DH", "EH", "R"),
    "where": ("W", "EH", "R"),
    "give": ("G", "IH", "V"),
    "live": ("L", "IH", "V"),
    "have": ("H", "AE", "V"),
    "through": ("TH", "R", "UW"),
    "though": ("DH", "OW"),
    "yeah": ("Y", "EH"),
    "don't": ("D", "OW", "N", "T"),
    "won't": ("W", "OW", "N", "T"),
    "my": ("M", "AY"),
    "by": ("B", "AY"),
    "why": ("W", "AY"),
    "fly": ("F", "L", "AY"),
    "cry": ("K", "R", "AY"),
    "sky": ("S", "K", "AY"),
    "try": ("T", "R", "AY"),
    "dry": ("D", "R", "AY"),
}
_VOWEL_GROUPS = (
    ("igh", "AY"),
    ("eigh", "EY"),
    ("ough", "AO"),
    ("augh", "AO"),
    ("ee", "IY"),
    ("ea", "IY"),
    ("ie", "IY"),
    ("ei", "EY"),
    ("ey", "EY"),
    ("ai", "EY"),
    ("ay", "EY"),
    ("oa", "OW"),
    ("oo", "UW"),
    ("ou", "AW"),
    ("ow", "OW"),
    ("oi", "OY"),
    ("oy", "OY"),
    ("au", "AO"),
    ("aw", "AO"),
    ("ue", "UW"),
    ("ew", "UW"),
    ("eu", "UW"),
    ("ui", "UW"),
)
_SHORT = {"a": "AE", "e": "EH", "i": "IH", "o": "AA", "u": "AH", "y": "IH"}
_LONG = {"a": "EY", "e": "IY", "i": "AY", "o": "OW", "u": "UW", "y": "AY"}
_OPEN = {"a": "AA", "e": "IY", "i": "AY", "o": "OW", "u": "UW", "y": "IY"}
_R_COLOURED = {"a": ("AA", "R"), "o": ("AO", "R"), "e": ("ER",), "i": ("ER",), "u": ("ER",)}
_CONS_GROUPS = (
    ("tch", ("CH",)),
    ("dge", ("JH",)),
    ("sch", ("S", "K")),
    ("sh", ("SH",)),
    ("ch", ("CH",)),
    ("th", ("TH",)),
    ("ph", ("F",)),
    ("wh", ("W",)),
    ("qu", ("K", "W")),
    ("kn", ("N",)),
    ("wr", ("R",)),
    ("gn", ("N",)),
    ("ck", ("K",)),
    ("ng", ("NG",)),
    ("nk", ("NG", "K")),
    ("gh", ()),
    ("mb", ("M",)),
    ("x", ("K", "S")),
    ("c", ("K",)),
    ("j", ("JH",)),
    ("q", ("K",)),
    ("y", ("Y",)),
)
_VOICED_TH = {
    "this",
    "that",
    "they",
    "them",
    "then",
    "than",
    "there",
    "these",
    "those",
    "thy",
    "thee",
    "thou",
    "though",
    "with",
}


def syllable_phones(text: str) -> tuple[str, ...]:
    """Phones of a sung syllable (or short word), e.g. ``"night" -> ("N", "AY", "T")``.

    Unknown or empty text sings "ah". Spelling rules cover onsets, vowel digraphs, r-coloured
    vowels, silent final "e" and open syllables; they are a heuristic, not a dictionary.
    """
    word = re.sub(r"[^a-z]", "", text.lower())
    if not word:
        return ("AA",)
    if word in _WORDS:
        return _WORDS[word]
    phones = _spell(word)
    if word in _VOICED_TH or (word.startswith("th") and len(word) <= 3):
        phones = ["DH" if p == "TH" else p for p in phones]
    if not any(_is_vowel(p) for p in phones):
        phones.append("AX")
    return tuple(phones)


def _is_vowel(phone: str) -> bool:
    return phone in VOWELS_MALE or phone in DIPHTHONGS


def _spell(word: str) -> list[str]:
    phones: list[str] = []
    i = 0
    silent_e = len(word) > 2 and word.endswith("e") and word[-2] not in "aeiouy"
    end = len(word) - 1 if silent_e else len(word)
    while i < end:
        vowel = _vowel_at(word, i, end, silent_e)
        if vowel is not None:
            used, sounds = vowel
        else:
            used, sounds = _consonant_at(word, i)
        phones.extend(sounds)
        i += used
    return [p for k, p in enumerate(phones) if k == 0 or p != phones[k - 1] or _is_vowel(p)]


def _vowel_at(word: str, i: int, end: int, silent_e: bool) -> tuple[int, tuple[str, ...]] | None:
    ch = word[i]
    if ch == "y" and (i == 0 or word[i + 1 : i + 2] in tuple("aeiou")):
        return None
    if ch not in "aeiouy":
        return None
    for group, phone in _VOWEL_GROUPS:
        if word.startswith(group, i):
            return len(group), (phone,)
    rest = word[i + 1 : end]
    if silent_e and rest == "r":
        return 2, (_LONG[ch], "R")  # fire, more, here
    if rest.startswith("r") and ch in _R_COLOURED and rest[1:2] not in tuple("aeiouy"):
        return 2, _R_COLOURED[ch]
    if word.startswith("all", i) or word.startswith("alk", i):
        return (1 if word[i + 2] == "l" else 2), ("AO",)  # all, call / walk, talk
    if word.startswith("old", i):
        return 1, ("OW",)
    if not rest and not silent_e:
        return 1, (_OPEN[ch],)
    if silent_e and len(rest) <= 1 and all(c not in "aeiouy" for c in rest):
        return 1, (_LONG[ch],)
    return 1, (_SHORT[ch],)


def _consonant_at(word: str, i: int) -> tuple[int, tuple[str, ...]]:
    for group, sounds in _CONS_GROUPS:
        if word.startswith(group, i):
            if group == "c" and word[i + 1 : i + 2] in ("e", "i", "y"):
                return 1, ("S",)
            return len(group), sounds
    ch = word[i]
    if ch == "h" and i == len(word) - 1:
        return 1, ()  # oh, ah: a final h is silent
    return 1, ((ch.upper(),) if ch.upper() in CONSONANTS else ())


# ---------------------------------------------------------------------------------------------
# Singer: per-song voice parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """One singer, drawn per song from the seed."""

    kind: str  # "male" or "female"
    formant_scale: float  # vocal tract length factor
    vibrato_rate: float  # Hz
    vibrato_depth: float  # cents, peak deviation
    vibrato_delay: float  # seconds into a note before vibrato starts
    glide: float  # seconds of portamento between legato notes
    scoop: float  # cents below the note at a phrase onset
    breathiness: float  # aspiration level relative to voicing (amplitude)
    brightness: float  # lowers the loudness-driven spectral tilt (0 dull .. 0.6 bright)
    upper_level: float  # tract level above ~4 kHz (between resonances) relative to DC
    ring: float  # 0 speech-like .. 1 trained "singer's formant" (F4, F5 drawn down to F3)
    upper_damping: float  # bandwidth factor of the tract resonances above F5
    jitter: float  # f0 perturbation (fraction, std)
    shimmer: float  # amplitude perturbation (fraction, std)
    drift: float  # cents std of the slow pitch wander
    breath_db: float  # level of breath intakes relative to singing
    open_quotient: float  # fraction of the glottal cycle with the folds apart
    phase_jitter: float  # std of the fast glottal phase wobble (cycles)


def draw_voice(kind: str, rng: np.random.Generator) -> Voice:
    """A random singer of the given kind ("male" or "female")."""
    u = rng.uniform
    return Voice(
        kind=kind if kind in ("male", "female") else "male",
        formant_scale=float(u(0.94, 1.06)),
        vibrato_rate=float(u(5.0, 6.5)),
        vibrato_depth=float(u(20.0, 60.0)),
        vibrato_delay=float(u(0.15, 0.35)),
        glide=float(u(0.05, 0.12)),
        scoop=float(u(20.0, 120.0)),
        breathiness=float(u(0.03, 0.12)),
        brightness=float(u(0.0, 0.6)),
        upper_level=float(u(0.15, 0.4)),
        upper_damping=float(u(0.8, 1.6)),
        ring=float(u(0.0, 1.0)),
        jitter=float(u(0.002, 0.006)),
        shimmer=float(u(0.02, 0.06)),
        drift=float(u(3.0, 10.0)),
        breath_db=float(u(-32.0, -24.0)),
        open_quotient=float(u(0.6, 0.75) if kind == "female" else u(0.48, 0.62)),
        phase_jitter=float(u(0.001, 0.003)),
    )


# ---------------------------------------------------------------------------------------------
# Notes, phrases and the phone timeline
# ---------------------------------------------------------------------------------------------


def prepare_notes(part: Part, duration: float) -> list[Note]:
    """Sorted notes inside ``[0, duration)``, overlaps cut, notes under 30 ms dropped."""
    notes = sorted((n for n in part.notes if n.start < duration), key=lambda n: n.start)
    out: list[Note] = []
    for k, n in enumerate(notes):
        start = max(n.start, 0.0)
        end = min(n.start + n.duration, duration)
        if k + 1 < len(notes):
            end = min(end, notes[k + 1].start)
        if end - start >= 0.03:
            out.append(Note(start, end - start, n.pitch, n.velocity, n.lyric))
    return out


def phrases(notes: list[Note]) -> list[list[Note]]:
    """Notes grouped into phrases: a rest of ``PHRASE_GAP`` or more starts a new one."""
    groups: list[list[Note]] = []
    for n in notes:
        if groups and n.start - (groups[-1][-1].start + groups[-1][-1].duration) < PHRASE_GAP:
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups


@dataclass(frozen=True)
class Segment:
    """One phone (or phone part) placed in time. ``part`` is "", "closure" or "release"."""

    start: float
    end: float
    phone: str
    part: str = ""


def note_segments(note: Note) -> list[Segment]:
    """The phones of a note's lyric laid out over the note: consonants first squeezed to fit."""
    phones = syllable_phones(note.lyric)
    cons = [CONSONANTS[p].duration if p in CONSONANTS else 0.0 for p in phones]
    n_vowels = sum(1 for p in phones if _is_vowel(p))
    squeeze = min(1.0, 0.45 * note.duration / max(sum(cons), 1e-9))
    vowel_len = (note.duration - squeeze * sum(cons)) / n_vowels
    t = note.start
    segs: list[Segment] = []
    for p, c in zip(phones, cons, strict=True):
        length = c * squeeze if p in CONSONANTS else vowel_len
        segs.extend(_phone_parts(p, t, t + length))
        t += length
    return segs


def _phone_parts(phone: str, t0: float, t1: float) -> list[Segment]:
    if phone in DIPHTHONGS:
        a, b = DIPHTHONGS[phone]
        split = t1 - min(0.3 * (t1 - t0), 0.15)
        return [Segment(t0, split, a), Segment(split, t1, b)]
    c = CONSONANTS.get(phone)
    if c is not None and c.kind in ("plosive", "affricate"):
        split = t0 + (0.55 if c.kind == "plosive" else 0.35) * (t1 - t0)
        return [Segment(t0, split, phone, "closure"), Segment(split, t1, phone, "release")]
    return [Segment(t0, t1, phone)]


# ---------------------------------------------------------------------------------------------
# Control tracks at the frame rate
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tracks:
    """Per-frame controls, all ``[T]`` unless noted. Frame ``t`` is centred on sample t*HOP."""

    f0: F64  # Hz
    formants: F32  # [T, 5] Hz
    bandwidths: F32  # [T, 5] Hz
    voicing: F32  # 0..1 amplitude of the glottal source (dynamics included)
    aspiration: F32  # amplitude of glottal noise through the tract
    frication: F32  # amplitude of fricative noise
    noise_shape: npt.NDArray[np.int64]  # index into NOISE_SHAPES
    nasal: F32  # 0..1 depth of the nasal notch
    zero: F32  # Hz of the nasal notch
    tilt: F32  # extra spectral tilt exponent (-0.6 bright .. 1 soft)
    level: F32  # loudness envelope from velocity and phrasing (scales consonants and bursts)


def _frames(t: float, frame_rate: float, n_frames: int) -> int:
    return int(np.clip(np.ceil(t * frame_rate), 0, n_frames))


def smoothstep(x: npt.ArrayLike) -> F64:
    """Cubic ease from 0 (x <= 0) to 1 (x >= 1)."""
    y = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return y * y * (3.0 - 2.0 * y)


def smooth(x: npt.NDArray[np.floating], tau: float, frame_rate: float) -> F64:
    """Zero-phase one-pole smoothing with time constant ``tau`` seconds along axis 0."""
    a = float(np.exp(-1.0 / max(tau * frame_rate, 1e-6)))
    return np.asarray(signal.filtfilt([1.0 - a], [1.0, -a], x, axis=0, padtype="constant"))


def dynamics(notes: list[Note], times: F64, rng: np.random.Generator) -> F64:
    """Loudness envelope ``[T]``: velocity, attack/release per note and a phrase arc."""
    env = np.zeros_like(times)
    for phrase in phrases(notes):
        p0, p1 = phrase[0].start, phrase[-1].start + phrase[-1].duration
        arc_depth = rng.uniform(0.0, 0.3)
        for k, n in enumerate(phrase):
            last = k == len(phrase) - 1
            attack, release = (0.06 if k == 0 else 0.025), (0.12 if last else 0.04)
            x = times - n.start
            sel = (x > -0.005) & (x < n.duration + release)
            pos = (times[sel] - p0) / max(p1 - p0, 1e-3)
            arc = (
                1.0
                + arc_depth * np.sin(np.pi * np.clip(pos, 0, 1))
                - 0.15 * smoothstep((pos - 0.8) / 0.2)
            )
            shape = smoothstep(x[sel] / attack) * (
                1.0 - smoothstep((x[sel] - n.duration) / release)
            )
            gain = (n.velocity / 127.0) ** 1.3
            env[sel] = np.maximum(env[sel], gain * arc * shape)
    return env


def pitch_track(notes: list[Note], times: F64, voice: Voice, rng: np.random.Generator) -> F64:
    """MIDI pitch ``[T]`` (fractional): held notes, glides, scoops, vibrato and drift."""
    starts = np.array([n.start for n in notes])
    target = np.array([n.pitch + rng.normal(0.0, 0.06) for n in notes])
    idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(notes) - 1)
    pitch = target[idx].astype(np.float64)
    first = 0
    for phrase in phrases(notes):
        _add_glides(pitch, times, phrase, target[first : first + len(phrase)], voice)
        first += len(phrase)
        x = times - phrase[0].start
        pitch -= voice.scoop / 100.0 * (1.0 - smoothstep(x / 0.12)) * ((x >= -0.05) & (x < 0.12))
        end = phrase[-1].start + phrase[-1].duration
        x = times - end
        pitch -= rng.uniform(0.3, 1.5) * smoothstep(x / 0.15) * ((x > 0) & (x < 0.3))
    return pitch + vibrato_cents(notes, times, voice, rng) / 100.0


def _add_glides(pitch: F64, times: F64, phrase: list[Note], target: F64, voice: Voice) -> None:
    for k in range(1, len(phrase)):
        prev, cur = phrase[k - 1], phrase[k]
        jump = target[k] - target[k - 1]
        glide = voice.glide * (1.0 + 0.3 * abs(jump) / 12.0)
        glide = min(glide, 0.4 * prev.duration, 0.4 * cur.duration)
        centre = cur.start + 0.1 * glide
        sel = (times >= centre - glide / 2) & (times < centre + glide / 2)
        shape = smoothstep((times[sel] - centre + glide / 2) / max(glide, 1e-3))
        pitch[sel] = target[k - 1] + jump * shape


def vibrato_cents(notes: list[Note], times: F64, voice: Voice, rng: np.random.Generator) -> F64:
    """Vibrato plus slow drift in cents ``[T]``; vibrato fades in after ``vibrato_delay``."""
    frame_rate = 1.0 / (times[1] - times[0]) if len(times) > 1 else 1.0
    depth = np.zeros_like(times)
    for n in notes:
        delay = min(voice.vibrato_delay, 0.4 * n.duration)
        ramp = min(0.3, 0.5 * n.duration)
        x = times - n.start
        sel = (x >= 0) & (x < n.duration + 0.1)
        amount = voice.vibrato_depth * rng.uniform(0.8, 1.2) * min(1.0, n.duration / 0.6)
        depth[sel] = amount * smoothstep((x[sel] - delay) / ramp)
    depth = smooth(depth, 0.03, frame_rate)
    wobble = smooth(rng.standard_normal(len(times)), 0.5, frame_rate)
    rate = voice.vibrato_rate * (1.0 + 0.03 * wobble / max(float(np.std(wobble)), 1e-9))
    phase = 2.0 * np.pi * np.cumsum(rate) / frame_rate + rng.uniform(0, 2 * np.pi)
    vib = depth * (np.sin(phase) + 0.08 * np.sin(2 * phase))
    drift = smooth(rng.standard_normal(len(times)), 0.3, frame_rate)
    drift *= voice.drift / max(float(np.std(drift)), 1e-9)
    return np.asarray(vib + drift)


def _fill_phones(
    notes: list[Note], frame_rate: float, n_frames: int, voice: Voice
) -> dict[str, F64]:
    """Unsmoothed per-frame targets from every note's phones (formants NaN where unknown)."""
    t: dict[str, F64] = {
        k: np.zeros(n_frames) for k in ("voicing", "aspiration", "frication", "nasal", "zero")
    }
    t["shape"] = np.zeros(n_frames)
    t["formants"] = np.full((n_frames, 3), np.nan)
    vowels = VOWELS_MALE if voice.kind == "male" else VOWELS_FEMALE
    scale = 1.0 if voice.kind == "male" else 1.15
    bursts: list[tuple[float, str, bool]] = []
    for n in notes:
        for seg in note_segments(n):
            a, b = _frames(seg.start, frame_rate, n_frames), _frames(seg.end, frame_rate, n_frames)
            if seg.phone in vowels:
                t["formants"][a:b] = vowels[seg.phone]
                t["voicing"][a:b] = 1.0
                t["aspiration"][a:b] = voice.breathiness
                continue
            _fill_consonant(t, a, b, seg, scale, voice)
            if seg.part == "release":
                bursts.append(
                    (seg.start, CONSONANTS[seg.phone].burst, CONSONANTS[seg.phone].voiced)
                )
    t["bursts"] = np.array(
        [(s, "ptk".index(k), v) for s, k, v in bursts], dtype=np.float64
    ).reshape(-1, 3)
    return t


def _fill_consonant(
    t: dict[str, F64], a: int, b: int, seg: Segment, scale: float, voice: Voice
) -> None:
    c = CONSONANTS[seg.phone]
    if c.kind != "aspirate":
        t["formants"][a:b] = np.array(c.locus) * scale
    voiced_level = {"nasal": 0.45, "liquid": 0.7}.get(c.kind, 0.3)
    if seg.part == "closure":
        t["voicing"][a:b] = 0.08 if c.voiced else 0.0
        return
    t["voicing"][a:b] = voiced_level if c.voiced else 0.0
    if c.kind == "aspirate":
        t["aspiration"][a:b] = 0.35
    elif seg.part == "release" and c.kind == "plosive":
        t["aspiration"][a:b] = 0.05 if c.voiced else 0.3
    if c.noise:
        t["frication"][a:b] = 10.0 ** (c.noise_db / 20.0)
        t["shape"][a:b] = NOISE_SHAPES.index(c.noise)
    if c.kind == "nasal":
        t["nasal"][a:b] = 1.0
        t["zero"][a:b] = c.zero * scale * voice.formant_scale


def _fill_nan(x: F64) -> F64:
    """Fill NaN rows from the next valid row (so /h/ takes its vowel), then the previous one."""
    valid = ~np.isnan(x[:, 0])
    if not valid.any():
        return np.full_like(x, 500.0)
    n = len(x)
    nxt = np.where(valid, np.arange(n), n)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]
    prv = np.maximum.accumulate(np.where(valid, np.arange(n), -1))
    pick = np.where(nxt < n, nxt, prv)
    return x[pick]


def build_tracks(
    notes: list[Note], n_frames: int, frame_rate: float, voice: Voice, rng: np.random.Generator
) -> tuple[Tracks, F64]:
    """All control tracks for a part, plus its plosive bursts ``[K, 3]`` (time, band, voiced)."""
    times = np.arange(n_frames) / frame_rate
    raw = _fill_phones(notes, frame_rate, n_frames, voice)
    dyn = dynamics(notes, times, rng)
    pitch = pitch_track(notes, times, voice, rng)
    jitter = 1.0 + voice.jitter * rng.standard_normal(n_frames)
    f0 = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0) * jitter
    low = smooth(_fill_nan(raw["formants"]), 0.018, frame_rate) * voice.formant_scale
    low[:, 0] = np.maximum(low[:, 0], 1.08 * f0)  # singers raise F1 above f0 on high notes
    upper = np.array(UPPER_FORMANTS[voice.kind]) * voice.formant_scale
    upper -= voice.ring * np.array([0.12, 0.25]) * upper  # singer's formant cluster
    formants = np.concatenate([low, np.broadcast_to(upper, (n_frames, 2))], axis=1)
    bw = np.broadcast_to(np.array(BANDWIDTHS[voice.kind]), (n_frames, 5)).copy()
    nasal = smooth(raw["nasal"], 0.012, frame_rate)
    bw[:, 0] *= 1.0 + 1.5 * nasal
    loud = dyn / max(float(dyn.max()), 1e-9)
    tracks = Tracks(
        f0=np.clip(f0, 50.0, 1500.0),
        formants=formants.astype(np.float32),
        bandwidths=bw.astype(np.float32),
        voicing=(smooth(raw["voicing"], 0.008, frame_rate) * dyn).astype(np.float32),
        aspiration=(smooth(raw["aspiration"], 0.01, frame_rate) * dyn).astype(np.float32),
        frication=(smooth(raw["frication"], 0.008, frame_rate) * np.sqrt(dyn)).astype(np.float32),
        noise_shape=raw["shape"].astype(np.int64),
        nasal=nasal.astype(np.float32),
        zero=np.maximum(raw["zero"], 1.0).astype(np.float32),
        tilt=np.clip(0.9 - voice.brightness - 0.9 * loud, -0.6, 1.0).astype(np.float32),
        level=dyn.astype(np.float32),
    )
    bursts = raw["bursts"].copy()
    if len(bursts):
        bursts = bursts[np.interp(bursts[:, 0], times, dyn) > 0]
    return tracks, bursts


# ---------------------------------------------------------------------------------------------
# Excitation: band-limited glottal pulses and gated noise
# ---------------------------------------------------------------------------------------------

TABLE_LEN = 4096
SPEED_QUOTIENT = 3.0  # opening phase / closing phase of the glottal pulse


@lru_cache(maxsize=64)
def pulse_tables(rate: int, open_quotient: float) -> tuple[F32, F64]:
    """Rosenberg flow-derivative wavetables ``[K, TABLE_LEN]`` and the f0 where each starts ``[K]``.

    Table ``k`` holds every harmonic below ~21.5 kHz (or 0.45 ``rate``) for f0 up to
    ``edges[k + 1]``, so the glottal source reaches the top octave without aliasing.
    """
    m = 1 << 14
    x = np.arange(m) / m
    rise = open_quotient * SPEED_QUOTIENT / (1.0 + SPEED_QUOTIENT)
    fall = open_quotient - rise
    flow = np.where(
        x < rise,
        0.5 * (1.0 - np.cos(np.pi * x / rise)),
        np.where(x < open_quotient, np.cos(np.pi * (x - rise) / (2.0 * fall)), 0.0),
    )
    spectrum = np.fft.rfft(flow)[: TABLE_LEN // 2 + 1] * 1j * np.arange(TABLE_LEN // 2 + 1)
    edges = 40.0 * 2.0 ** (np.arange(38) / 6.0)
    top = min(21_500.0, 0.45 * rate)
    tables = np.zeros((len(edges), TABLE_LEN))
    for k, edge in enumerate(edges):
        s = spectrum.copy()
        s[int(top / (edge * 2.0 ** (1 / 6))) + 1 :] = 0.0
        tables[k] = np.fft.irfft(s, TABLE_LEN)
    tables /= np.std(tables[0])
    return tables.astype(np.float32), edges


def pulse_lookup(frac: F64, f0: F64, rate: int, open_quotient: float) -> F32:
    """Glottal pulses ``[N]`` (unit RMS at full band) at phase ``frac`` ``[N]`` (cycles, 0..1),
    each sample read from the wavetable band-limited for its ``f0`` ``[N]``."""
    tables, edges = pulse_tables(rate, round(open_quotient, 2))
    k = np.clip(np.searchsorted(edges, f0, side="right") - 1, 0, len(edges) - 1)
    pos = frac * TABLE_LEN
    i0 = pos.astype(np.int64) % TABLE_LEN
    w = (pos - np.floor(pos)).astype(np.float32)
    flat = tables.ravel()
    base = k * TABLE_LEN
    a = flat[base + i0]
    b = flat[base + (i0 + 1) % TABLE_LEN]
    return np.asarray(a + w * (b - a), dtype=np.float32)


def gated_noise(frac: F64, depth: F32, open_quotient: float, rng: np.random.Generator) -> F32:
    """White noise ``[N]``, pulsed by the glottal cycle by ``depth`` ``[N]`` (0..1, breathy voice)."""
    white = rng.standard_normal(len(frac), dtype=np.float32)
    opening = np.sin(np.pi * np.minimum(frac / open_quotient, 1.0)) ** 2 / (0.5 * open_quotient)
    return np.asarray(white * (1.0 - depth + depth * opening), dtype=np.float32)


BLOCK = 1 << 18  # samples per block of excitation (bounds memory on long songs)


def excitation(
    tr: Tracks, n: int, rate: int, voice: Voice, rng: np.random.Generator
) -> tuple[F32, F32]:
    """Voiced source (voicing and shimmer applied) and breath noise, each ``[n]`` inside
    zero padding ``PAD`` (``[PAD[0] + n + PAD[1]]``, ready for :func:`filter_frames`).

    A fast random wobble of the glottal phase (``voice.phase_jitter`` cycles, ~2 kHz wide)
    leaves the low harmonics clean and turns the highest ones into noise, as in a real voice.
    Computed block by block with the phase and filter state carried over.
    """
    centres = np.arange(len(tr.f0)) * HOP
    amp_frames = tr.voicing * (1.0 + voice.shimmer * rng.standard_normal(len(tr.f0)))
    depth_frames = 0.7 * np.minimum(tr.voicing / max(float(tr.voicing.max()), 1e-9), 1.0)
    a = float(np.exp(-2.0 * np.pi * 2000.0 / rate))
    wobble_gain = voice.phase_jitter / np.sqrt((1.0 - a) / (1.0 + a))  # unit-std one-pole output
    zi, phase = np.zeros(1), rng.uniform()
    voiced = np.zeros(PAD[0] + n + PAD[1], np.float32)
    noise = np.zeros(PAD[0] + n + PAD[1], np.float32)
    for s0 in range(0, n, BLOCK):
        samples = np.arange(s0, min(s0 + BLOCK, n))
        f0 = np.interp(samples, centres, tr.f0)
        wobble, zi = signal.lfilter([1.0 - a], [1.0, -a], rng.standard_normal(len(f0)), zi=zi)
        steps = phase + np.cumsum(f0 / rate)
        phase = float(steps[-1] % 1.0)
        cycle = steps + wobble_gain * wobble
        frac = cycle - np.floor(cycle)
        amp = np.interp(samples, centres, amp_frames).astype(np.float32)
        out = slice(PAD[0] + s0, PAD[0] + s0 + len(samples))
        voiced[out] = pulse_lookup(frac, f0, rate, voice.open_quotient) * amp
        depth = np.interp(samples, centres, depth_frames).astype(np.float32)
        noise[out] = gated_noise(frac, depth, voice.open_quotient, rng)
    return voiced, noise


# ---------------------------------------------------------------------------------------------
# Spectral envelopes and STFT shaping
# ---------------------------------------------------------------------------------------------

NOISE_GAIN = 3.0  # calibrates white-noise shapes against the harmonic source (measured)
CHUNK_FRAMES = 1024


@dataclass(frozen=True)
class Shapes:
    """Fixed spectral shapes over the STFT bins ``[F]``."""

    freqs: F32  # bin centres (Hz)
    upper: F32  # tract resonances above the fifth formant (fixed per singer)
    noise: F32  # [len(NOISE_SHAPES), F] fricative / breath noise shapes, peak 1
    aspiration: F32  # spectrum of glottal turbulence (flat, falling above 3 kHz)


def spectral_shapes(rate: int, voice: Voice) -> Shapes:
    """The per-singer fixed spectra used by :func:`shape_chunk`."""
    f = np.fft.rfftfreq(N_FFT, 1.0 / rate).astype(np.float64)
    fs = max(voice.formant_scale, 0.5) * (1.0 if voice.kind == "male" else 1.15)
    # Five cascaded resonances alone fall at -60 dB/octave above F5; a real tract keeps
    # resonating (near odd multiples of c / 4L), so the upper band gets a floor with damped
    # peaks at resonances 6, 7, ... The glottal source and tilt make the overall slope.
    upper = np.ones_like(f)
    for centre in np.arange(5.5, 40.0) * 1000.0 * fs:
        width = voice.upper_damping * (200.0 + 0.05 * centre)
        d2 = (centre**2 - f**2) ** 2
        upper *= np.sqrt((d2 + (3.0 * width * f) ** 2) / (d2 + (width * f) ** 2))
    log_upper = np.log(upper)
    trend = np.convolve(np.pad(log_upper, 40, mode="edge"), np.ones(81) / 81, mode="valid")
    upper = voice.upper_level * np.exp(log_upper - trend) * smoothstep((f - 2000.0) / 2500.0)
    noise = np.zeros((len(NOISE_SHAPES), len(f)))
    noise[1] = _band(f, 6500.0 * fs, 0.55, 0.35)  # s
    noise[2] = _band(f, 3200.0 * fs, 0.65, 0.25)  # sh
    noise[3] = _band(f, 5000.0, 1.8, 0.5)  # f
    noise[4] = _band(f, 6000.0, 1.6, 0.4)  # th
    noise[5] = 0.6 * _band(f, 1500.0 * fs, 1.0, 0.0) + _band(f, 7000.0, 1.3, 0.3)  # breath
    aspiration = (1.0 + (f / 3000.0) ** 2) ** -0.5
    return Shapes(*(a.astype(np.float32) for a in (f, upper, noise, aspiration)))


def _band(f: F64, centre: float, octaves: float, plateau: float) -> F64:
    """A log-Gaussian band around ``centre`` with a shoulder above it falling 9 dB/octave."""
    x = np.log2(np.maximum(f, 20.0) / centre)
    peak = np.exp(-0.5 * (x / octaves) ** 2)
    above = plateau * smoothstep(x / 0.5) * 10.0 ** (-9.0 * np.maximum(x, 0.0) / 20.0)
    return np.asarray(np.maximum(peak, above) * smoothstep((f - 150.0) / 300.0))


def tract_gain(formants: F32, bandwidths: F32, shapes: Shapes) -> F32:
    """Vocal tract magnitude ``[C, F]`` for ``[C, 5]`` formants: resonances, then upper band."""
    f = shapes.freqs[None, :]
    f2 = f * f
    mag = np.ones((len(formants), len(shapes.freqs)), dtype=np.float32)
    for k in range(formants.shape[1]):
        fk2 = formants[:, k : k + 1] ** 2
        bk = bandwidths[:, k : k + 1]
        mag *= fk2 / np.sqrt((fk2 - f2) ** 2 + (bk * f) ** 2)
    return np.asarray(np.sqrt(mag * mag + shapes.upper[None, :] ** 2), dtype=np.float32)


def shape_chunk(
    voiced: C64,
    noise: C64,
    tr: Tracks,
    sl: slice,
    shapes: Shapes,
) -> C64:
    """Filter one chunk of STFT frames ``[C, F]``: voiced and noise spectra through their envelopes."""
    f = shapes.freqs[None, :]
    tract = tract_gain(tr.formants[sl], tr.bandwidths[sl], shapes)
    zero = tr.zero[sl, None]
    notch = 1.0 - 0.85 * tr.nasal[sl, None] * np.exp(-(((f - zero) / (0.3 * zero)) ** 2))
    tract *= notch
    tilt = (1.0 + (f / 1500.0) ** 2) ** (-0.5 * tr.tilt[sl, None])
    noise_env = tr.aspiration[sl, None] * tract * shapes.aspiration[None, :]
    noise_env += tr.frication[sl, None] * shapes.noise[tr.noise_shape[sl]]
    return np.asarray(voiced * (tract * tilt) + noise * (NOISE_GAIN * noise_env))


def _hann() -> F32:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


PAD = (N_FFT // 2, N_FFT + HOP)  # zeros around the excitation so every frame is full


def filter_frames(voiced: F32, noise: F32, n: int, tr: Tracks, shapes: Shapes) -> F32:
    """Time-varying spectral shaping by weighted overlap-add, chunk by chunk.

    ``voiced`` and ``noise`` are the excitation padded by ``PAD`` (``[PAD[0] + n + PAD[1]]``);
    returns ``[n]``.
    """
    n_frames, hops = len(tr.f0), N_FFT // HOP
    win = _hann()
    views = [np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP] for x in (voiced, noise)]
    blocks = np.zeros((n_frames + hops, HOP), dtype=np.float32)
    for c0 in range(0, n_frames, CHUNK_FRAMES):
        sl = slice(c0, min(c0 + CHUNK_FRAMES, n_frames))
        spec_v, spec_n = (np.fft.rfft(v[sl] * win, axis=1) for v in views)
        frames = np.fft.irfft(shape_chunk(spec_v, spec_n, tr, sl, shapes), N_FFT, axis=1) * win
        for j in range(hops):
            blocks[sl.start + j : sl.stop + j] += frames[:, j * HOP : (j + 1) * HOP]
    # divide by the summed squared windows: rows hops-1 .. n_frames-1 get every frame's share
    wsq = (win * win).reshape(hops, HOP)
    blocks[hops - 1 : n_frames] /= wsq.sum(axis=0)
    edges = set(range(min(hops - 1, len(blocks)))) | set(
        range(max(n_frames, hops - 1), len(blocks))
    )
    for row in sorted(edges):
        used = [j for j in range(hops) if 0 <= row - j < n_frames]
        blocks[row] /= np.maximum(wsq[used].sum(axis=0), 1e-3) if used else 1.0
    return blocks.ravel()[PAD[0] : PAD[0] + n]


# ---------------------------------------------------------------------------------------------
# Time-domain events: plosive bursts and breath intakes
# ---------------------------------------------------------------------------------------------

BURST_BANDS = {0: (300.0, 3000.0, 0.35), 1: (2500.0, 12000.0, 0.8), 2: (1200.0, 4000.0, 0.6)}


@lru_cache(maxsize=64)
def _bandpass(lo: float, hi: float, rate: int) -> F64:
    """Second-order Butterworth band-pass as second-order sections."""
    return np.asarray(signal.butter(2, [lo, hi], btype="band", fs=rate, output="sos"))


def add_bursts(y: F32, bursts: F64, level: F32, rate: int, rng: np.random.Generator) -> None:
    """Add plosive release bursts in place: ``bursts`` rows are (time, band 0/1/2, voiced)."""
    length = int(0.02 * rate)
    env = np.exp(-np.arange(length) / (0.004 * rate)).astype(np.float32)
    ref = float(np.sqrt(np.mean(y[np.abs(y) > 0] ** 2))) if np.any(y) else 1.0
    for t, band, voiced in bursts:
        lo, hi, gain = BURST_BANDS[int(band)]
        sos = _bandpass(lo, min(hi, 0.45 * rate), rate)
        start = int(t * rate)
        seg = y[start : start + length]
        frame = min(int(t * rate / HOP), len(level) - 1)
        amp = ref * gain * (0.5 if voiced else 1.0) * float(np.sqrt(level[frame]))
        burst = signal.sosfilt(sos, rng.standard_normal(length)).astype(np.float32) * env * amp
        seg += burst[: len(seg)]


def breath_intakes(
    notes: list[Note], n: int, rate: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Sample spans ``(start, end)`` of breaths taken in the rests before phrases."""
    spans: list[tuple[int, int]] = []
    prev_end = 0.0
    for phrase in phrases(notes):
        rest = phrase[0].start - prev_end
        prev_end = phrase[-1].start + phrase[-1].duration
        if rest < 0.35 or rng.random() > 0.85:
            continue
        end = phrase[0].start - rng.uniform(0.03, 0.08)
        length = min(rng.uniform(0.25, 0.5), 0.6 * rest)
        spans.append((max(int((end - length) * rate), 0), min(int(end * rate), n)))
    return spans


def breath_sound(length: int, rate: int, rng: np.random.Generator) -> F32:
    """One inhalation ``[length]``: turbulent noise with a soft formant and a hiss band."""
    white = rng.standard_normal(length + 2048)
    hi = min(15_000.0, 0.45 * rate)
    body = signal.sosfilt(_bandpass(700.0, 2500.0, rate), white)
    hiss = signal.sosfilt(_bandpass(3500.0, hi, rate), white)
    sound = (0.8 * body + hiss)[2048:]
    x = np.linspace(0.0, 1.0, length)
    env = np.sin(np.pi * x) ** 1.5 * (0.7 + 0.3 * x)
    sound *= env / max(float(np.sqrt(np.mean((sound * env) ** 2))), 1e-9)
    return np.asarray(sound, dtype=np.float32)


def add_breaths(
    y: F32, notes: list[Note], rate: int, level_db: float, rng: np.random.Generator
) -> None:
    """Add breath intakes in place, ``level_db`` below the RMS of the sung signal."""
    active = np.abs(y) > 1e-4 * float(np.max(np.abs(y))) if np.any(y) else np.zeros(0, bool)
    if not active.any():
        return
    ref = float(np.sqrt(np.mean(y[active] ** 2)))
    for a, b in breath_intakes(notes, len(y), rate, rng):
        if b - a > 64:
            gain = ref * 10.0 ** ((level_db + rng.uniform(-3.0, 3.0)) / 20.0)
            y[a:b] += gain * breath_sound(b - a, rate, rng)


# ---------------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------------


def sing(part: Part, duration: float, *, rate: int = MODEL_RATE, seed: int) -> F32:
    """Sing a vocal part. Returns ``[N]`` float32 mono, ``N = round(duration * rate)``.

    Parameters
    ----------
    part
        A part with notes carrying a ``lyric`` syllable each; ``part.voice`` picks the male or
        female formant set (anything else: chosen from the notes' median pitch).
    duration
        Length of the output in seconds (notes past it are cut).
    rate
        Output sample rate in Hz.
    seed
        Everything random (the singer, vibrato, noise) comes from this seed.

    The output peaks at ``PEAK`` (-6 dBFS) unless the part is silent.
    """
    n = max(round(duration * rate), 0)
    notes = prepare_notes(part, duration)
    if n == 0 or not notes:
        return np.zeros(n, dtype=np.float32)
    rng = np.random.default_rng(seed)
    voice = draw_voice(voice_kind(part, notes), rng)
    tr, bursts = build_tracks(notes, n // HOP + 1, rate / HOP, voice, rng)
    y = render_tracks(tr, n, rate, voice, rng)
    add_bursts(y, bursts, tr.level, rate, rng)
    add_breaths(y, notes, rate, voice.breath_db, rng)
    peak = float(np.max(np.abs(y)))
    return (y * (PEAK / peak) if peak > 0 else y).astype(np.float32)


def voice_kind(part: Part, notes: list[Note]) -> str:
    """``part.voice`` when it is "male" or "female", else guessed from the median pitch."""
    if part.voice in ("male", "female"):
        return part.voice
    return "female" if float(np.median([n.pitch for n in notes])) >= 60 else "male"


def render_tracks(tr: Tracks, n: int, rate: int, voice: Voice, rng: np.random.Generator) -> F32:
    """The sung signal ``[n]`` from its control tracks (no bursts or breaths yet)."""
    voiced, noise = excitation(tr, n, rate, voice, rng)
    return filter_frames(voiced, noise, n, tr, spectral_shapes(rate, voice))

"""Song arrangement of generator version 2: genre templates over the procedural song writer.

A version-2 song is written in two passes, each with its own random stream, so version 1's
songs (one pass, :func:`engine.data.songwriter.write_song`) are untouched:

1. :func:`engine.data.songwriter.compose` writes the plan and the usual parts, its style drawn
   from the genre's styles (rock, pop, hip-hop, EDM ("electronic") most of the time, funk,
   latin, ballad and jazz now and then);
2. the genre's template (:data:`TEMPLATES`) then swaps sounds and adds layers: synthesized
   808/909 kits, trap hat rolls, 808 basses with glides, synth, reese and distorted basses,
   supersaw chords, pluck arpeggios, double-tracked distorted guitars; and vocals: our own
   lyric lines (:mod:`engine.data.lyrics`), a doubled lead, a harmony a third above in the
   choruses, sustained "ooh"/"aah" backing chords and ad-libs.

Parts with a role from :data:`engine.data.layers.ROLES` are rendered by the numpy synth
layers; the others as before (FluidSynth, hydrogen kits, the singers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from engine.data import lyrics, songwriter
from engine.data.song import Note, Part, SongSpec
from engine.data.songwriter import INSTRUMENTS, TEXTURES, Plan, Span
from engine.data.theory import voicing

Rng = np.random.Generator


@dataclass(frozen=True)
class Template:
    """What a genre draws (probabilities unless said otherwise)."""

    styles: tuple[str, ...]  # song-writer styles
    synth_kit: float  # drums on the synthesized 808/909 kit (else hydrogen/GM)
    basses: tuple[str, ...]  # bass roles drawn from ("" keeps the GM bass)
    supersaw: float
    pluck: float
    guitars: float  # double-tracked distorted guitars
    harmony: float
    double: float
    oohs: float
    adlibs: float


TEMPLATES: dict[str, Template] = {
    "rock": Template(("rock",), 0.0, ("", "", "bass_dist"), 0.0, 0.1, 0.85, 0.5, 0.5, 0.3, 0.1),
    "pop": Template(("pop",), 0.5, ("", "synth_bass", ""), 0.35, 0.5, 0.1, 0.6, 0.5, 0.4, 0.3),
    "hip-hop": Template(("hip-hop",), 0.7, ("808", "808", ""), 0.1, 0.4, 0.0, 0.3, 0.6, 0.3, 0.8),
    "edm": Template(
        ("electronic",), 0.85, ("synth_bass", "reese", "808"), 0.8, 0.7, 0.0, 0.5, 0.4, 0.5, 0.3
    ),
    "other": Template(
        ("funk", "latin", "ballad", "jazz"), 0.0, ("",), 0.0, 0.1, 0.0, 0.4, 0.3, 0.3, 0.0
    ),
}
GENRE_WEIGHTS: dict[str, float] = {
    "rock": 0.25,
    "pop": 0.25,
    "hip-hop": 0.2,
    "edm": 0.2,
    "other": 0.1,
}


def write_song_v2(seed: int, *, min_seconds: float = 30, max_seconds: float = 90) -> SongSpec:
    """The version-2 procedural song number ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, 0xA22])
    names = list(GENRE_WEIGHTS)
    genre = names[int(rng.choice(len(names), p=list(GENRE_WEIGHTS.values())))]
    t = TEMPLATES[genre]
    plan, parts = songwriter.compose(
        seed, min_seconds=min_seconds, max_seconds=max_seconds, styles=t.styles
    )
    lead, drums, bass, *others = parts
    lead = lyrics.relyric(lead, rng)
    drums = _drums(drums, plan, t, genre, rng)
    bass = _bass(bass, t, rng)
    others = others + _layers(plan, t, genre, rng)
    vocals = [lead, *_backing(lead, plan, t, genre, rng)]
    label = genre if genre != "other" else plan.style
    return songwriter.song_spec(plan, [*vocals, drums, bass, *others], style=label)


def _drums(drums: Part, plan: Plan, t: Template, genre: str, rng: Rng) -> Part:
    notes = list(drums.notes)
    if genre == "hip-hop" and rng.random() < 0.7:
        notes += _hat_rolls(plan, rng)
    if rng.random() < t.synth_kit:
        kit = "808 kit" if genre == "hip-hop" else "909 kit"
        return replace(drums, name=kit, role="synth_kit", notes=tuple(sorted(notes, key=_start)))
    return replace(drums, notes=tuple(sorted(notes, key=_start)))


def _start(n: Note) -> float:
    return n.start


def _hat_rolls(plan: Plan, rng: Rng) -> list[Note]:
    """Trap hat rolls: 32nd or triplet bursts on the last beat of some bars."""
    out = []
    bar_q = plan.meter.bar_q
    for bar in range(plan.total_bars - 1):
        if rng.random() > 0.35:
            continue
        step = float(rng.choice([0.125, 1 / 6]))
        q0 = (bar + 1) * bar_q - 1.0
        for k in range(round(1.0 / step)):
            t0 = plan.seconds(q0 + k * step)
            out.append(Note(round(t0, 5), 0.05, 42, int(50 + 40 * k * step)))
    return out


def _bass(bass: Part, t: Template, rng: Rng) -> Part:
    role = str(rng.choice(t.basses))
    if role == "":
        return bass
    if role == "bass_dist":
        return replace(
            bass, name="distorted bass", role="bass_dist", program=int(rng.choice([33, 34]))
        )
    notes = bass.notes
    if role == "808":  # held to the next note; a slide (overlap) now and then
        notes = _legato(notes, rng)
    return replace(bass, name=f"{role} bass", role=role, program=38)


def _legato(notes: Sequence[Note], rng: Rng) -> tuple[Note, ...]:
    out = []
    for i, n in enumerate(notes):
        nxt = notes[i + 1].start if i + 1 < len(notes) else n.start + n.duration
        slide = rng.random() < 0.25 and nxt - n.start < 1.0
        length = (nxt - n.start) + (0.04 if slide else -0.01)
        pitch = n.pitch + (12 if rng.random() < 0.15 else 0)
        out.append(Note(n.start, round(max(0.05, length), 5), pitch, n.velocity))
    return tuple(out)


def _chords(plan: Plan, center: int, size: int, spans: Sequence[Span], vel: float) -> list[Note]:
    out = []
    for s in spans:
        t0, t1 = plan.seconds(s.start), plan.seconds(s.end)
        gain = plan.gain(s.section)
        for p in voicing(s.chord, center, size):
            out.append(Note(round(t0, 5), round(t1 - t0 - 0.03, 5), p, int(min(127, vel * gain))))
    return out


def _big(plan: Plan) -> list[Span]:
    spans = [s for s in plan.body_spans if plan.sections[s.section].name in ("chorus", "bridge")]
    return spans or list(plan.body_spans)


def _layers(plan: Plan, t: Template, genre: str, rng: Rng) -> list[Part]:
    out: list[Part] = []
    if rng.random() < t.supersaw:
        spans = list(plan.body_spans) if genre == "edm" and rng.random() < 0.5 else _big(plan)
        chords = tuple(_chords(plan, int(rng.integers(60, 68)), 4, spans, 95))
        out.append(Part("other", "supersaw chords", 81, chords, role="supersaw"))
    if rng.random() < t.pluck:
        evs = TEXTURES["arp"](plan, rng, INSTRUMENTS["synth"], plan.body_spans)
        notes = songwriter._humanize(evs, plan, rng, jitter_ms=2.0, vel_spread=6.0)
        out.append(Part("other", "pluck arp", 84, notes, role="pluck"))
    if rng.random() < t.guitars:
        for k, program in enumerate((29, 30)):
            evs = TEXTURES["power"](plan, rng, INSTRUMENTS["overdriven guitar"], plan.body_spans)
            notes = songwriter._humanize(evs, plan, rng, jitter_ms=8.0, vel_spread=5.0)
            name = "distorted guitar " + ("left" if k == 0 else "right")
            out.append(Part("other", name, program, notes, role="guitar"))
    return out


def _backing(lead: Part, plan: Plan, t: Template, genre: str, rng: Rng) -> list[Part]:
    out: list[Part] = []
    chorus = [s for s in plan.sections if s.name == "chorus"]
    in_chorus = [
        n
        for n in lead.notes
        if any(
            plan.seconds(s.start_bar * plan.meter.bar_q)
            <= n.start
            < plan.seconds((s.start_bar + s.bars) * plan.meter.bar_q)
            for s in chorus
        )
    ]
    if rng.random() < t.double:
        jitter = rng.normal(0.0, 0.012, len(lead.notes))
        notes = tuple(
            replace(n, start=round(max(0.0, n.start + float(j)), 5))
            for n, j in zip(lead.notes, jitter, strict=True)
        )
        out.append(replace(lead, name="double vocal", notes=notes))
    if in_chorus and rng.random() < t.harmony:
        notes = tuple(replace(n, pitch=plan.key.step(n.pitch, 2)) for n in in_chorus)
        out.append(replace(lead, name="harmony vocal", notes=notes))
    if rng.random() < t.oohs:
        out.append(_oohs(lead, plan, rng))
    if rng.random() < t.adlibs:
        out.append(_adlibs(lead, plan, rng))
    return out


def _oohs(lead: Part, plan: Plan, rng: Rng) -> Part:
    """Sustained backing "ooh"/"aah": the chord's top tone over every chorus chord."""
    voice = str(rng.choice(["male", "female"]))
    low, high = songwriter.VOICE_RANGES[voice]
    word = str(rng.choice(["ooh", "aah", "ah", "oh"]))
    notes = []
    for s in _big(plan):
        t0, t1 = plan.seconds(s.start), plan.seconds(s.end)
        pitch = s.chord.nearest((low + high) // 2 + 2, low, high)
        notes.append(Note(round(t0 + 0.02, 5), round(t1 - t0 - 0.12, 5), pitch, 70, word))
    return Part("vocals", f"backing oohs ({voice})", 53, tuple(notes), voice=voice, role="backing")


def _adlibs(lead: Part, plan: Plan, rng: Rng) -> Part:
    """Short shouted words in the gaps between the lead's phrases."""
    gaps = []
    notes = sorted(lead.notes, key=_start)
    for a, b in pairwise(notes):
        end = a.start + a.duration
        if b.start - end > 0.6:
            gaps.append((end + 0.1, b.start - 0.1))
    voice = lead.voice or "male"
    low, high = songwriter.VOICE_RANGES[voice]
    out = []
    for g0, g1 in gaps:
        if rng.random() > 0.5:
            continue
        word = str(rng.choice(lyrics.ADLIBS))
        pitch = plan.chord_at(g0 / plan.spq).nearest(
            int(rng.integers(low + 5, high - 2)), low, high
        )
        length = min(g1 - g0, float(rng.uniform(0.25, 0.6)))
        out.append(Note(round(g0, 5), round(length, 5), pitch, 80, word))
    return Part("vocals", "ad-lib vocal", 54, tuple(out), voice=voice, role="backing")

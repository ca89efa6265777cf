"""A small drum sampler over the recorded kits of the Debian package ``hydrogen-drumkits``.

Each kit is a folder with a ``drumkit.xml`` that lists instruments; every instrument has one or
more velocity layers (a sample file with a velocity range and a gain). We play a drum
:class:`~engine.data.song.Part` through such a kit:

1. every GM drum key is mapped to a drum *class* (``kick``, ``snare``, ``hat_closed``, ...) by
   :data:`GM_DRUM_CLASS`; keys not in the table fall back to ``perc``;
2. every kit instrument gets a class from keywords in its name (:func:`instrument_class`);
   one instrument per class is drawn per song from the seed, and a class the kit lacks falls
   back along :data:`CLASS_FALLBACK` (a hit with no class left is dropped);
3. the layer is picked by velocity, its sample is read once, resampled to the output rate
   (mono, pitch shifted by the layer's ``pitch`` in semitones), stripped of leading silence
   (some kits start their samples up to 30 ms late) and cached in memory;
4. hits are one-shots (the note length is ignored) mixed at ``velocity/127 * layer gain *
   instrument volume * instrument gain * DRUM_GAIN``, and a closed or pedal hat chokes a
   ringing open hat (:func:`mix_hits`, shared with the numpy drum synth).

Samples are read with :func:`engine.audio.read_audio` and resampled with
:func:`engine.audio.resample`.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from engine.audio import read_audio, resample
from engine.constants import MODEL_RATE
from engine.data.song import Part
from engine.errors import StemtokError

#: Where Debian's ``hydrogen-drumkits`` puts its kits.
KITS_DIR: Final[Path] = Path("/usr/share/hydrogen/data/drumkits")

#: Fixed level of the sampler (-6 dB): kit samples peak near full scale and hits overlap.
DRUM_GAIN: Final[float] = 0.5

#: Licence note for kits whose drumkit.xml names none (Debian's copyright file lists them all).
COPYRIGHT_NOTE: Final[str] = "see /usr/share/doc/hydrogen-drumkits/copyright"

#: Leading silence is trimmed up to where a sample first reaches this fraction of its peak...
LEAD_THRESHOLD: Final[float] = 0.01
#: ...less this lead-in (seconds), which is faded in.
LEAD_MARGIN: Final[float] = 0.0005

#: Length of the fade that ends a choked open hat, in seconds.
CHOKE_FADE: Final[float] = 0.008

#: Classes a usable drum kit must have (``list_kits(complete=True)``).
CORE_CLASSES: Final[tuple[str, ...]] = ("kick", "snare", "hat_closed")

#: Drum class of each General MIDI drum key (channel 10).
GM_DRUM_CLASS: Final[dict[int, str]] = {
    **dict.fromkeys((35, 36), "kick"),
    **dict.fromkeys((38, 40), "snare"),
    **dict.fromkeys((27, 31, 32, 33, 37, 75, 76, 77), "rim"),
    **dict.fromkeys((28, 39), "clap"),
    42: "hat_closed",
    44: "hat_pedal",
    46: "hat_open",
    **dict.fromkeys((41, 43), "tom_low"),
    **dict.fromkeys((45, 47), "tom_mid"),
    **dict.fromkeys((48, 50), "tom_high"),
    **dict.fromkeys((49, 52, 55, 57), "crash"),
    **dict.fromkeys((51, 59), "ride"),
    **dict.fromkeys((53, 80, 81), "ride_bell"),
    54: "tambourine",
    **dict.fromkeys((34, 56, 67, 68), "cowbell"),
    **dict.fromkeys((69, 70, 73, 74), "shaker"),
}

#: Where a class goes when the kit has no instrument for it, nearest first.
CLASS_FALLBACK: Final[dict[str, tuple[str, ...]]] = {
    "kick": ("tom_low",),
    "snare": ("rim", "clap"),
    "rim": ("snare",),
    "clap": ("snare",),
    "hat_closed": ("hat_pedal", "hat_open"),
    "hat_pedal": ("hat_closed",),
    "hat_open": ("hat_closed",),
    "tom_low": ("tom_mid", "tom_high", "perc"),
    "tom_mid": ("tom_low", "tom_high", "perc"),
    "tom_high": ("tom_mid", "tom_low", "perc"),
    "crash": ("ride", "hat_open"),
    "ride": ("crash", "hat_closed"),
    "ride_bell": ("ride", "cowbell"),
    "tambourine": ("shaker", "hat_closed"),
    "shaker": ("tambourine", "hat_closed"),
    "cowbell": ("ride_bell", "rim"),
    "perc": ("tom_high", "tom_mid", "rim"),
}

CHOKING_CLASSES: Final[frozenset[str]] = frozenset({"hat_closed", "hat_pedal"})
CHOKED_CLASSES: Final[frozenset[str]] = frozenset({"hat_open"})


def gm_drum_class(key: int) -> str:
    """Drum class of a GM drum key; keys outside the GM table are ``perc``."""
    return GM_DRUM_CLASS.get(key, "perc")


# --- instrument names -> classes -------------------------------------------------------------

_HAT = re.compile(r"hat|hh")
_TOM = re.compile(r"tom")
_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern), cls)
    for pattern, cls in (
        (r"ride.*(bell|cup)|(bell|cup).*ride", "ride_bell"),
        (r"ride", "ride"),
        (r"crash|splash|china|cymbal", "crash"),
        (r"kick|bass ?drum|\bbd\b|thump", "kick"),
        (r"snare|\bsd\b|\bsn\b", "snare"),
        (r"rim|stick|click|clave|wood ?block", "rim"),
        (r"clap|snap", "clap"),
        (r"tamb", "tambourine"),
        (r"maraca|shaker|cabasa", "shaker"),
        (r"cowbell|agogo|bell", "cowbell"),
        (r"conga|bongo|djembe|cajon|timbale|sangban|dununba|kenkeni|drum", "perc"),
    )
)
#: Words that make an instrument unfit as the plain sound of its class.
_SKIP = re.compile(r"roll|swish|choke|\bfx\b|zap")


def instrument_class(name: str) -> str | None:
    """Drum class of a kit instrument from its name, or ``None`` when it is not recognised.

    Parenthesised details (``"Kick (Tama Superstar 22")"``) are ignored.
    """
    text = re.sub(r"\(.*?\)", " ", name.lower())
    if _SKIP.search(text):
        return None
    if _HAT.search(text):
        return _hat_class(text)
    if _TOM.search(text) and not re.search(r"snare|kick", text):
        return _tom_class(text)
    return next((cls for pattern, cls in _RULES if pattern.search(text)), None)


def _hat_class(text: str) -> str:
    if re.search(r"open|\bop\b|ohh|semi", text):
        return "hat_open"
    if re.search(r"pedal|\bpd\b|foot", text):
        return "hat_pedal"
    return "hat_closed"


def _tom_class(text: str) -> str:
    if re.search(r"floor|low|\blo\b|\b3\b", text):
        return "tom_low"
    if re.search(r"hi|\b1\b", text):
        return "tom_high"
    return "tom_mid"


# --- kit files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One sample of an instrument, played for velocities in ``[vmin, vmax]`` (0..1)."""

    path: Path
    vmin: float
    vmax: float
    gain: float
    pitch: float  # semitones


@dataclass(frozen=True)
class Instrument:
    name: str
    cls: str | None  # drum class, None when the name is not recognised
    volume: float
    gain: float
    layers: tuple[Layer, ...]

    def layer_for(self, velocity: int) -> Layer:
        """The layer for a MIDI velocity: the first whose range holds it, else the nearest."""
        v = velocity / 127.0
        for layer in self.layers:
            if layer.vmin <= v <= layer.vmax:
                return layer
        return min(self.layers, key=lambda la: min(abs(v - la.vmin), abs(v - la.vmax)))


@dataclass(frozen=True)
class Kit:
    name: str
    folder: Path
    licence: str
    author: str
    instruments: tuple[Instrument, ...]

    def by_class(self) -> dict[str, tuple[Instrument, ...]]:
        """Instruments of each recognised class, in kit order."""
        out: dict[str, list[Instrument]] = {}
        for inst in self.instruments:
            if inst.cls is not None:
                out.setdefault(inst.cls, []).append(inst)
        return {cls: tuple(insts) for cls, insts in out.items()}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str, default: str = "") -> str:
    for child in elem:
        if _local(child.tag) == name:
            return (child.text or default).strip()
    return default


def _child_float(elem: ET.Element, name: str, default: float) -> float:
    try:
        return float(_child_text(elem, name) or default)
    except ValueError:
        return default


def _parse_layers(inst: ET.Element, folder: Path) -> tuple[Layer, ...]:
    layers = []
    for elem in inst.iter():
        if _local(elem.tag) != "layer":
            continue
        path = folder / _child_text(elem, "filename")
        lo, hi = _child_float(elem, "min", 0.0), _child_float(elem, "max", 1.0)
        gain, pitch = _child_float(elem, "gain", 1.0), _child_float(elem, "pitch", 0.0)
        layers.append(Layer(path, lo, hi, gain, pitch))
    if not layers and _child_text(inst, "filename"):  # old format: one sample, no layers
        layers.append(Layer(folder / _child_text(inst, "filename"), 0.0, 1.0, 1.0, 0.0))
    return tuple(la for la in layers if la.path.is_file())


def _parse_instrument(elem: ET.Element, folder: Path) -> Instrument | None:
    layers = _parse_layers(elem, folder)
    name = _child_text(elem, "name")
    if not layers or not name:
        return None
    volume = _child_float(elem, "volume", 1.0)
    gain = _child_float(elem, "gain", 1.0)
    return Instrument(name, instrument_class(name), volume, gain, layers)


def parse_kit(xml_path: Path) -> Kit:
    """Read one ``drumkit.xml``; instruments without an existing sample file are left out."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise StemtokError(f"cannot read drum kit {xml_path}: {exc}") from exc
    folder = xml_path.parent
    parsed = (_parse_instrument(e, folder) for e in root.iter() if _local(e.tag) == "instrument")
    return Kit(
        name=_child_text(root, "name") or folder.name,
        folder=folder,
        licence=_child_text(root, "license") or COPYRIGHT_NOTE,
        author=_child_text(root, "author"),
        instruments=tuple(inst for inst in parsed if inst is not None),
    )


@functools.lru_cache(maxsize=64)
def load_kit(kit: str, root: Path = KITS_DIR) -> Kit:
    """Parse the kit in folder ``root / kit`` (cached)."""
    xml_path = root / kit / "drumkit.xml"
    if not xml_path.is_file():
        raise StemtokError(f"drum kit {kit!r} not found in {root} (apt install hydrogen-drumkits)")
    return parse_kit(xml_path)


def list_kits(root: Path = KITS_DIR, *, complete: bool = True) -> list[str]:
    """Folder names of the installed kits, sorted.

    With ``complete`` only kits that have every class in :data:`CORE_CLASSES` are listed (the
    percussion-only kits are left out); an absent folder gives an empty list.
    """
    if not root.is_dir():
        return []
    names = sorted(p.parent.name for p in root.glob("*/drumkit.xml"))
    if not complete:
        return names
    return [n for n in names if set(CORE_CLASSES) <= set(load_kit(n, root).by_class())]


# --- samples and mixing -----------------------------------------------------------------------


@functools.lru_cache(maxsize=2048)
def load_sample(path: Path, rate: int = MODEL_RATE, pitch: float = 0.0) -> np.ndarray:
    """One sample file as mono float32 ``[L]`` at ``rate``, shifted by ``pitch`` semitones.

    Cached: a kit's samples are read and resampled once per process. A pitch shift resamples
    from the file's rate times ``2 ** (pitch / 12)``, rounded to 100 Hz (2 cents at most) so the
    polyphase resampler stays small.
    """
    audio, src_rate = read_audio(path)  # [C, L]
    if pitch:
        src_rate = max(100, 100 * round(src_rate * 2.0 ** (pitch / 12.0) / 100))
    mono = resample(audio.mean(axis=0, keepdims=True), src_rate, rate)[0]
    out = trim_lead(mono.astype(np.float32), rate)
    out.setflags(write=False)
    return out


def trim_lead(wave: np.ndarray, rate: int) -> np.ndarray:
    """Drop the silence some kit samples start with (up to 30 ms), so hits land on time.

    The sample starts :data:`LEAD_MARGIN` before it first reaches :data:`LEAD_THRESHOLD` of its
    peak, faded in over that margin.
    """
    level = np.abs(wave)
    peak = float(level.max()) if len(wave) else 0.0
    if peak <= 0.0:
        return wave
    margin = round(LEAD_MARGIN * rate)
    start = max(0, int(np.argmax(level >= LEAD_THRESHOLD * peak)) - margin)
    out = wave[start:].copy()
    ramp = min(margin, len(out)) if start > 0 else 0
    out[:ramp] *= np.linspace(0.0, 1.0, ramp, endpoint=False, dtype=np.float32)
    return out


@dataclass(frozen=True)
class Hit:
    """One drum hit for :func:`mix_hits`: ``wave * gain`` added from sample ``start`` on."""

    start: int
    wave: np.ndarray  # [L] float32
    gain: float
    cls: str  # drum class, for choking


def _choke_times(hits: Sequence[Hit]) -> np.ndarray:
    """For every hit, the start of the next choking hit (a large number when none)."""
    chokers = np.sort(np.array([h.start for h in hits if h.cls in CHOKING_CLASSES], np.int64))
    starts = np.array([h.start for h in hits], np.int64)
    idx = np.searchsorted(chokers, starts, side="right")
    padded = np.append(chokers, np.iinfo(np.int64).max)
    return padded[idx]


def mix_hits(hits: Sequence[Hit], n: int, rate: int) -> np.ndarray:
    """Sum one-shot hits into a mono float32 buffer ``[n]``; closed hats choke open hats."""
    out = np.zeros(n, np.float32)
    if not hits:
        return out
    fade = max(1, round(CHOKE_FADE * rate))
    for hit, choke in zip(hits, _choke_times(hits), strict=True):
        if hit.start >= n or hit.start < 0:
            continue
        wave = hit.wave[: n - hit.start] * np.float32(hit.gain)
        if hit.cls in CHOKED_CLASSES and choke - hit.start < len(wave):
            wave = _choked(wave, int(choke - hit.start), fade)
        out[hit.start : hit.start + len(wave)] += wave
    return out


def _choked(wave: np.ndarray, at: int, fade: int) -> np.ndarray:
    """``wave`` cut off at sample ``at`` with a linear fade of ``fade`` samples."""
    end = min(len(wave), at + fade)
    cut = wave[:end].copy()
    cut[at:end] *= np.linspace(1.0, 0.0, end - at, endpoint=False, dtype=np.float32)
    return cut


# --- the sampler ------------------------------------------------------------------------------


def choose_instruments(kit: Kit, seed: int) -> dict[str, Instrument]:
    """One instrument per class of the kit, drawn from the seed (stable per song)."""
    rng = np.random.default_rng([seed, 0x5EED])
    return {
        cls: insts[int(rng.integers(len(insts)))] for cls, insts in sorted(kit.by_class().items())
    }


def resolve_class(cls: str, available: Iterable[str]) -> str | None:
    """``cls`` itself when available, else its nearest fallback, else ``None``."""
    have = set(available)
    return next((c for c in (cls, *CLASS_FALLBACK.get(cls, ())) if c in have), None)


def drum_hits(part: Part, kit: Kit, *, rate: int, seed: int) -> list[Hit]:
    """The hits that play ``part`` on ``kit``; notes with no instrument are dropped."""
    chosen = choose_instruments(kit, seed)
    hits = []
    for note in part.notes:
        cls = resolve_class(gm_drum_class(note.pitch), chosen)
        if cls is None:
            continue
        inst = chosen[cls]
        layer = inst.layer_for(note.velocity)
        gain = note.velocity / 127.0 * layer.gain * inst.volume * inst.gain * DRUM_GAIN
        wave = load_sample(layer.path, rate, layer.pitch)
        hits.append(Hit(round(note.start * rate), wave, gain, cls))
    return hits


def render_drums(
    part: Part,
    duration: float,
    *,
    kit: str,
    rate: int = MODEL_RATE,
    seed: int,
    root: Path = KITS_DIR,
) -> np.ndarray:
    """Play a drum part on a hydrogen kit.

    Parameters
    ----------
    part : the drum part (GM drum keys as pitches).
    duration : seconds of output; hits ring on until it ends.
    kit : folder name of the kit under ``root`` (see :func:`list_kits`).
    rate : output sample rate.
    seed : picks the instrument of each class when a kit has several.

    Returns
    -------
    mono float32 audio ``[N]``, ``N = round(duration * rate)``.
    """
    n = round(duration * rate)
    return mix_hits(drum_hits(part, load_kit(kit, root), rate=rate, seed=seed), n, rate)

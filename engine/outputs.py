"""What an output file can hold, decided before any work is done, and the conversions it needs.

:func:`plan_output` takes a format and the input's channels, rate and (optionally) a bit depth
and returns an :class:`OutputPlan`: what will be written, with a one-line ``notice`` when that
differs from the input, or raises :class:`~engine.errors.StemtokError` with a one-line refusal.
The CLI, the editor and ``stemtok send`` call it before they separate anything. The limits are
those of pedalboard's writers (``tests/test_outputs.py`` checks them):

======  ========  ===============================================  ==============
format  channels  sample rates                                     bit depths
======  ========  ===============================================  ==============
WAV     any       8-192 kHz                                        8, 16, 24, 32f
FLAC    1-8       8-192 kHz                                        16, 24
AIFF    any       8-192 kHz                                        8, 16, 24
MP3     1-2       8, 11.025, 12, 16, 22.05, 24, 32, 44.1, 48 kHz   (V0 VBR)
======  ========  ===============================================  ==============

What a musician gets where the input does not fit:

- MP3 of more than two channels: a stereo downmix (:func:`downmix_matrix`), with a notice;
- MP3 above 48 kHz: resampled to 48 kHz (44.1 kHz from 88.2 and 176.4 kHz), with a notice; a
  rate between the MP3 rates goes up to the next one;
- FLAC of more than 8 channels, or a bit depth the format does not hold: refused (WAV holds it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio import BIT_DEPTHS, MAX_CHANNELS, MP3_RATES, RESAMPLE_HALF_TAPS, resample
from engine.constants import MAX_RATE, MIN_RATE
from engine.errors import AudioError, StemtokError

FORMATS = tuple(BIT_DEPTHS)  # wav, flac, aiff, mp3
#: The depth written when none is asked for: 32-bit float keeps every sample where it can.
DEFAULT_DEPTH = {"wav": "32f", "flac": "24", "aiff": "24", "mp3": ""}
SUFFIX_FORMATS = {
    ".wav": "wav",
    ".wave": "wav",
    ".flac": "flac",
    ".aif": "aiff",
    ".aiff": "aiff",
    ".mp3": "mp3",
}
_LAYOUTS = {  # WAVE channel order of the usual layouts with more than two channels
    3: ("3.0", ("L", "R", "C")),
    4: ("quad", ("L", "R", "Ls", "Rs")),
    5: ("5.0", ("L", "R", "C", "Ls", "Rs")),
    6: ("5.1", ("L", "R", "C", "LFE", "Ls", "Rs")),
    8: ("7.1", ("L", "R", "C", "LFE", "Ls", "Rs", "Lb", "Rb")),
}
_MINUS_3DB = 1 / math.sqrt(2)
_TO_STEREO = {
    "L": (1.0, 0.0),
    "R": (0.0, 1.0),
    "C": (_MINUS_3DB, _MINUS_3DB),
    "LFE": (0.0, 0.0),
    "Ls": (_MINUS_3DB, 0.0),
    "Rs": (0.0, _MINUS_3DB),
    "Lb": (_MINUS_3DB, 0.0),
    "Rb": (0.0, _MINUS_3DB),
}


@dataclass(frozen=True)
class OutputPlan:
    """What a file of ``fmt`` will hold for an input of ``in_channels`` at ``in_rate``.

    ``depth`` is ``"8"``, ``"16"``, ``"24"`` or ``"32f"`` (``""`` for MP3); ``notice`` is one
    line saying what changes (empty when the file keeps the input's channels and rate).
    """

    fmt: str
    channels: int
    rate: int
    depth: str
    in_channels: int
    in_rate: int
    notice: str = ""

    @property
    def clips(self) -> bool:
        """Whether samples beyond full scale must be clipped (all but 32-bit float)."""
        return self.depth != "32f"

    def converter(self) -> Converter:
        """A fresh converter for one stream of blocks ``[in_channels, n]``."""
        return Converter(self)


def format_of(path: str | Path) -> str:
    """The output format a file name asks for (by its suffix), or a one-line refusal."""
    p = Path(path)
    fmt = SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise AudioError(
            f"{p}: cannot write '{p.suffix or 'no suffix'}' files (name it .wav, "
            ".flac, .aiff or .mp3)"
        )
    return fmt


def output_depth(fmt: str, depth: str | int | None = None) -> str:
    """``depth`` checked against what ``fmt`` holds (None: :data:`DEFAULT_DEPTH`)."""
    if fmt not in FORMATS:
        raise StemtokError(f"cannot write '{fmt}' files (choose {_either(FORMATS)})")
    if depth is None or depth == "":
        return DEFAULT_DEPTH[fmt]
    allowed, text = BIT_DEPTHS[fmt], {"32": "32f", "float": "32f"}.get(str(depth), str(depth))
    if fmt == "mp3":
        raise StemtokError("MP3 has no bit depth to choose (it is written at VBR quality V0)")
    if text not in allowed:
        what = "32-bit float" if text == "32f" else f"{text} bits"
        hint = " (WAV holds 32-bit float)" if text == "32f" else ""
        raise StemtokError(f"{fmt.upper()} holds {_either(allowed)} bits, not {what}{hint}")
    return text


def _either(items: tuple[str, ...]) -> str:
    """ "a, b or c"."""
    return " or ".join(", ".join(items).rsplit(", ", 1))


def mp3_rate(rate: int) -> int:
    """The MP3 rate a ``rate`` input is written at: the same where MP3 holds it, else 48 kHz
    above 48 kHz (44.1 kHz for multiples of 11.025 kHz), else the next MP3 rate up."""
    if rate in MP3_RATES:
        return rate
    if rate > MP3_RATES[-1]:
        return 44100 if rate % 11025 == 0 else 48000
    return min(r for r in MP3_RATES if r > rate)


def plan_output(fmt: str, channels: int, rate: int, depth: str | int | None = None) -> OutputPlan:
    """What a ``fmt`` file will hold for an input of ``channels`` at ``rate`` Hz.

    Raises
    ------
    StemtokError
        One line, for a format, depth or channel count that cannot be written (FLAC of more
        than 8 channels); these are refused rather than changed.
    """
    fmt = fmt.lower()
    bits = output_depth(fmt, depth)
    if channels < 1 or not MIN_RATE <= rate <= MAX_RATE:
        raise StemtokError(f"cannot write {channels} channels at {rate} Hz")
    most = MAX_CHANNELS.get(fmt, channels)
    if fmt != "mp3" and channels > most:
        raise StemtokError(
            f"{fmt.upper()} holds at most {most} channels, the input has "
            f"{channels}: use WAV or AIFF"
        )
    if fmt != "mp3":
        return OutputPlan(fmt, channels, rate, bits, channels, rate)
    out_ch, out_rate = min(channels, most), mp3_rate(rate)
    changes = []
    if out_ch != channels:
        layout = _LAYOUTS.get(channels, ("", ()))[0]
        changes.append(
            f"{channels} channels{f' ({layout})' if layout else ''} are downmixed to stereo"
        )
    if out_rate != rate:
        changes.append(f"{_khz(rate)} is resampled to {_khz(out_rate)}")
    notice = ""
    if changes:
        notice = (
            f"MP3 holds 1-2 channels at 8-48 kHz: {' and '.join(changes)} (WAV and FLAC "
            "keep the input as it is)"
        )
    return OutputPlan(fmt, out_ch, out_rate, bits, channels, rate, notice)


def _khz(rate: int) -> str:
    return f"{rate / 1000:g} kHz"


def downmix_matrix(channels: int) -> np.ndarray:
    """``[2, channels]`` gains for a stereo downmix.

    The usual layouts in WAVE channel order (3.0, quad, 5.0, 5.1, 7.1) fold as in ITU-R BS.775:
    centre and surrounds at -3 dB, the LFE left out; no level is lowered, so a loud multichannel
    mix can exceed full scale (the writer clips it with a notice, or 32-bit float keeps it).
    Other counts put even channels left and odd ones right, averaged on each side.
    """
    if channels in _LAYOUTS:
        return np.array([_TO_STEREO[name] for name in _LAYOUTS[channels][1]], np.float32).T
    m = np.zeros((2, channels), np.float32)
    for side in (0, 1):
        m[side, side::2] = 1.0 / len(range(side, channels, 2))
    return m


class StreamResampler:
    """:func:`engine.audio.resample` over a stream of blocks ``[C, n]``: the concatenated output
    equals resampling the whole at once (to float rounding).

    Each call filters the new samples with ``pad`` samples of context on either side (the
    filter's half length, in input samples), so ``pad`` samples are held back until the next
    block or :meth:`flush`. Segments start at multiples of ``down`` input samples, where the
    polyphase grid of the whole signal and of the segment coincide.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        g = math.gcd(src_rate, dst_rate)
        self.src, self.dst, self.up, self.down = src_rate, dst_rate, dst_rate // g, src_rate // g
        half = math.ceil(RESAMPLE_HALF_TAPS * max(self.up, self.down) / self.up) + 1
        self.pad = self.down * math.ceil(half / self.down)
        self.buf: np.ndarray | None = None  # input from sample `start - pad` on
        self.start = 0  # first input sample whose output is not yet given (a multiple of down)
        self.seen = 0  # input samples received
        self.given = 0  # output samples given

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resampled ``[C, m]`` for as much of the input so far as has its right context."""
        if self.buf is None:
            self.buf = np.zeros((block.shape[0], self.pad), np.float32)
        self.buf = np.concatenate([self.buf, np.asarray(block, np.float32)], axis=1)
        self.seen += block.shape[1]
        stop = (self.seen - self.pad) // self.down * self.down
        return self._give(stop) if stop > self.start else self.buf[:, :0]

    def flush(self) -> np.ndarray:
        """The rest: ``round(total * dst / src)`` output samples in all."""
        if self.buf is None:
            return np.zeros((0, 0), np.float32)
        return self._give(self.seen)

    def _give(self, stop: int) -> np.ndarray:
        assert self.buf is not None
        span = stop - self.start
        need = self.pad + self.down * math.ceil((span + self.pad) / self.down)
        seg = self.buf[:, :need]
        if seg.shape[1] < need:  # the end of the stream: zeros, as resampling the whole has
            seg = np.pad(seg, ((0, 0), (0, need - seg.shape[1])))
        y = resample(seg, self.src, self.dst)
        first = self.pad * self.up // self.down
        total = (
            round(stop * self.dst / self.src) if stop == self.seen else stop * self.up // self.down
        )
        out = y[:, first : first + total - self.given]
        self.given += out.shape[1]
        self.buf = self.buf[:, span:]
        self.start = stop
        return out


class Converter:
    """Blocks ``[in_channels, n]`` of one stream as :class:`OutputPlan` says: downmixed, then
    resampled (a no-op where the plan keeps the input)."""

    def __init__(self, plan: OutputPlan) -> None:
        self.matrix = (
            downmix_matrix(plan.in_channels) if plan.channels != plan.in_channels else None
        )
        self.resampler = (
            StreamResampler(plan.in_rate, plan.rate) if plan.rate != plan.in_rate else None
        )

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if self.matrix is not None:
            block = self.matrix @ np.asarray(block, np.float32)  # (2, C) @ (C, n)
        return block if self.resampler is None else self.resampler.process(block)

    def flush(self) -> np.ndarray | None:
        """What the resampler still holds (None when nothing is held back)."""
        return None if self.resampler is None else self.resampler.flush()

"""Playback: the player owns the sounddevice stream; its callback only copies through the mixer.

The GUI thread and the callback share plain attributes, never a lock: the GUI posts requests
(``play``, ``seek``, a loop) as single assignments and the callback reads each once per block.
Without an audio device (CI, headless) :meth:`Player.open` returns False and says why in
:attr:`Player.error`; everything else (``fill``, export, the GUI) keeps working.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.editor.mixer import DEFAULT_BLOCK, OUT_CHANNELS, Mixer


class Player:
    """Transport (position, play state, loop) and the output stream for one :class:`Mixer`."""

    def __init__(self, mixer: Mixer, block: int = DEFAULT_BLOCK) -> None:
        self.mixer = mixer
        self.position = 0  # frame written next (the callback owns it)
        self.playing = False
        self.loop: tuple[int, int] | None = None  # [start, stop) frames
        self.error: str | None = None
        self.peak = np.zeros(OUT_CHANNELS, np.float32)  # |sample| max of the last block
        self._seek = -1
        self._buf = np.zeros((OUT_CHANNELS, block), np.float32)
        self._abs = np.zeros((OUT_CHANNELS, block), np.float32)
        self._stream: Any = None

    # ------------------------------------------------------------ GUI side
    def open(self) -> bool:
        """Open the default output device; False (and :attr:`error`) when there is none."""
        if self._stream is not None:
            return True
        try:
            import sounddevice as sd

            self._stream = sd.OutputStream(
                samplerate=self.mixer.rate,
                channels=OUT_CHANNELS,
                dtype="float32",
                callback=self._callback,
                blocksize=0,
            )
            self._stream.start()
        except Exception as exc:  # PortAudioError, OSError (no library), ValueError (rate)
            self._stream = None
            self.error = f"no audio output: {exc}"
            return False
        self.error = None
        return True

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def seek(self, frame: int) -> None:
        self._seek = max(0, min(int(frame), self.mixer.length))

    def set_loop(self, start: int, stop: int) -> None:
        """Loop ``[start, stop)`` (shorter than 10 ms, or ``stop <= start``: no loop)."""
        a, b = max(0, int(start)), min(int(stop), self.mixer.length)
        self.loop = (a, b) if b - a >= max(1, self.mixer.rate // 100) else None

    def play(self) -> bool:
        """Start playing (from the loop start when outside the loop); False without a device."""
        if self.position >= self.mixer.length and self._seek < 0:
            self.seek(self.loop[0] if self.loop else 0)
        self.playing = True
        return self.open()

    def pause(self) -> None:
        self.playing = False

    @property
    def now(self) -> int:
        """The frame the GUI should show (a pending seek counts)."""
        return self._seek if self._seek >= 0 else self.position

    # ------------------------------------------------------------ audio side
    def _callback(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        buf = self._buf[:, :frames]
        self.fill(buf)
        np.copyto(outdata, buf.T)

    def fill(self, buf: np.ndarray) -> None:
        """The next ``[2, n]`` frames of the transport (silence while paused), clipped to
        full scale; advances the position, wraps at the loop, stops at the end."""
        s = self._seek
        if s >= 0:
            self._seek = -1
            self.position = s
        if not self.playing:
            buf[:] = 0.0
            self.peak[:] = 0.0
            return
        done, n = 0, buf.shape[1]
        while done < n:
            done += self._fill_part(buf[:, done:], n - done)
        for c in range(OUT_CHANNELS):  # one-dimensional calls: no numpy iteration buffers
            np.clip(buf[c], -1.0, 1.0, out=buf[c])
            self.peak[c] = np.abs(buf[c], out=self._abs[c, :n]).max()

    def _fill_part(self, buf: np.ndarray, want: int) -> int:
        pos, loop = self.position, self.loop
        looping = loop is not None and loop[0] <= pos < loop[1]
        stop = loop[1] if looping and loop is not None else self.mixer.length
        take = max(0, min(want, stop - pos))
        if take == 0:  # the end of the song
            buf[:, :want] = 0.0
            self.playing = False
            return want
        self.mixer.render_into(buf[:, :take], pos)
        pos += take
        if looping and loop is not None and pos == loop[1]:
            pos = loop[0]
        self.position = pos
        return take

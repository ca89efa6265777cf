"""Protocol v1 of the bridge: frames, limits, error codes and request validation.

A frame is ``>I`` header length H, ``>Q`` payload length P, H bytes of UTF-8 JSON (an object
with a string ``"type"``), P bytes of payload. ``docs/bridge-protocol.md`` is the specification;
this module is its code (standard library only, so DAW scripts can import it).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

VERSION = 1
PREFIX = struct.Struct(">IQ")  # header length, payload length
FORMAT = "f32le"
STEM_NAMES = ("vocals", "drums", "bass", "other")
MODES = ("aligned", "generative")
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_ID = 64
MAX_SEED = 2**32 - 1
#: Before ``hello`` succeeds a frame may carry at most this much header and no payload.
HELLO_MAX_HEADER = 4096

# Error codes (the ``code`` of an ``error`` frame).
BAD_FRAME = "bad_frame"  # framing or JSON is broken, or P disagrees with the header
BAD_REQUEST = "bad_request"  # well-formed, but a field is missing, mistyped or out of range
BAD_AUDIO = "bad_audio"  # the PCM holds NaN or infinite samples
TOO_LARGE = "too_large"  # H or P beyond the limits (the connection is closed)
UNAUTHORIZED = "unauthorized"  # no hello first, or a wrong token (the connection is closed)
UNSUPPORTED = "unsupported"  # unknown type, version or sample format
BUSY = "busy"  # queue or client limit reached: try again later
CANCELLED = "cancelled"  # the job was cancelled
NOT_FOUND = "not_found"  # cancel of an id that is not queued or running
TIMEOUT = "timeout"  # idle connection or a frame that did not arrive in time (then closed)
SHUTDOWN = "shutdown"  # the server is stopping
INTERNAL = "internal"  # a bug in the server; the connection stays usable


class ProtocolError(Exception):
    """An error to answer with an ``error`` frame; ``fatal`` closes the connection after it."""

    def __init__(self, code: str, message: str, *, fatal: bool = False, id: str | None = None):
        super().__init__(message)
        self.code, self.message, self.fatal, self.id = code, message, fatal, id


@dataclass(frozen=True)
class Limits:
    """What one server accepts; announced in ``welcome``."""

    max_header: int = 65_536
    max_frames: int = 48_000 * 600  # 10 minutes at 48 kHz
    max_channels: int = 8
    max_payload: int = 256 * 2**20
    max_queue: int = 64  # jobs queued or running, all clients together
    max_client_jobs: int = 8  # jobs queued or running for one connection
    max_queued_bytes: int = 1024 * 2**20  # PCM held by queued jobs, all clients together
    max_clients: int = 32


@dataclass(frozen=True)
class Frame:
    header: dict[str, Any]
    payload: bytes = b""

    @property
    def type(self) -> str:
        return str(self.header.get("type"))


@dataclass(frozen=True)
class SeparateRequest:
    """A validated ``separate`` header."""

    id: str
    sample_rate: int
    channels: int
    frames: int
    stems: tuple[str, ...]
    mode: Literal["aligned", "generative"] = "aligned"
    seed: int | None = None
    header: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def payload_bytes(self) -> int:
        return self.frames * self.channels * 4

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


# --------------------------------------------------------------------------- encoding
def encode_frame(header: dict[str, Any], payload: bytes | memoryview = b"") -> bytes:
    """The prefix and header of a frame (append ``payload`` yourself when it is large)."""
    body = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return PREFIX.pack(len(body), len(payload)) + body


def error_header(code: str, message: str, id: str | None = None) -> dict[str, Any]:
    h: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if id is not None:
        h["id"] = id
    return h


# --------------------------------------------------------------------------- decoding
def check_prefix(h: int, p: int, limits: Limits, authed: bool) -> None:
    """Refuse lengths beyond the limits before a byte of header or payload is read."""
    if not authed:
        if h > HELLO_MAX_HEADER or p:
            raise ProtocolError(UNAUTHORIZED, "send hello (no payload) first", fatal=True)
        return
    if h > limits.max_header:
        raise ProtocolError(TOO_LARGE, f"header of {h} bytes > {limits.max_header}", fatal=True)
    if p > limits.max_payload:
        raise ProtocolError(TOO_LARGE, f"payload of {p} bytes > {limits.max_payload}", fatal=True)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_header(raw: bytes) -> dict[str, Any]:
    """UTF-8 JSON object with a string ``type`` (NaN, Infinity and duplicate keys refused)."""
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(BAD_FRAME, f"header is not UTF-8 JSON: {exc}"[:200]) from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_FRAME, "header is not a JSON object")
    if not isinstance(obj.get("type"), str):
        raise ProtocolError(BAD_FRAME, "header has no string 'type'")
    return obj


# --------------------------------------------------------------------------- validation
def _int(h: dict[str, Any], key: str, lo: int, hi: int, rid: str | None) -> int:
    v = h.get(key)
    if isinstance(v, float) and v.is_integer() and math.isfinite(v):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError(BAD_REQUEST, f"'{key}' must be an integer", id=rid)
    if not lo <= v <= hi:
        raise ProtocolError(BAD_REQUEST, f"'{key}' {v} is outside {lo}-{hi}", id=rid)
    return v


def request_id(h: dict[str, Any]) -> str:
    v = h.get("id")
    if not isinstance(v, str) or not 1 <= len(v) <= MAX_ID or not v.isprintable():
        raise ProtocolError(BAD_REQUEST, f"'id' must be a printable string of 1-{MAX_ID} chars")
    return v


def _stems(h: dict[str, Any], rid: str) -> tuple[str, ...]:
    v = h.get("stems", list(STEM_NAMES))
    if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
        raise ProtocolError(BAD_REQUEST, "'stems' must be a non-empty list of names", id=rid)
    bad = sorted({s for s in v if s not in STEM_NAMES})
    if bad:
        raise ProtocolError(BAD_REQUEST, f"unknown stems {bad}; use {list(STEM_NAMES)}", id=rid)
    return tuple(s for s in STEM_NAMES if s in v)


def parse_separate(h: dict[str, Any], payload_len: int, limits: Limits) -> SeparateRequest:
    """Validate a ``separate`` header against its payload length (before the payload is read)."""
    rid = request_id(h)
    if h.get("format", FORMAT) != FORMAT:
        raise ProtocolError(UNSUPPORTED, f"format must be {FORMAT!r}", id=rid)
    rate = _int(h, "sample_rate", MIN_RATE, MAX_RATE, rid)
    channels = _int(h, "channels", 1, limits.max_channels, rid)
    frames = _int(h, "frames", 1, limits.max_frames, rid)
    mode = h.get("mode", "aligned")
    if mode not in MODES:
        raise ProtocolError(BAD_REQUEST, f"'mode' must be one of {list(MODES)}", id=rid)
    seed = None if h.get("seed") is None else _int(h, "seed", 0, MAX_SEED, rid)
    typed: Literal["aligned", "generative"] = "generative" if mode == "generative" else "aligned"
    req = SeparateRequest(rid, rate, channels, frames, _stems(h, rid), typed, seed, h)
    if payload_len != req.payload_bytes:
        raise ProtocolError(
            BAD_FRAME,
            f"payload of {payload_len} bytes != frames*channels*4 = {req.payload_bytes}",
            id=rid,
        )
    return req


def stem_header(rid: str, name: str, rate: int, channels: int, frames: int) -> dict[str, Any]:
    return {
        "type": "stem",
        "id": rid,
        "name": name,
        "sample_rate": rate,
        "channels": channels,
        "frames": frames,
        "format": FORMAT,
    }


def welcome_header(server: str, limits: Limits, stems: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "welcome",
        "version": VERSION,
        "server": server,
        "stems": list(stems),
        "max_frames": limits.max_frames,
        "max_channels": limits.max_channels,
        "max_header": limits.max_header,
        "max_payload": limits.max_payload,
        "sample_rates": [MIN_RATE, MAX_RATE],
        "modes": list(MODES),
        "format": FORMAT,
    }

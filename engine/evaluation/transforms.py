"""Transforms applied to references and outputs before scoring (the paper's codec protocol).

The paper passes the references and every system's output through its codec (encode + decode)
before scoring, so that the codec's own loss is factored out. A :class:`Transform` is that step:
``(audio [C, N], rate) -> (audio [C', N'], rate')``. The plain protocol uses :class:`Identity`;
``--through-codec`` uses :class:`CodecRoundTrip`: each channel resampled to 48 kHz, encoded to
tokens and decoded by the codec's generative decoder (the paper's decoding), and resampled back to
the input rate and length, so references and estimates stay comparable sample for sample.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.constants import MODEL_RATE
from engine.errors import StemtokError, install_hint

#: the codec that ``--through-codec`` uses unless told otherwise (shipped with stemtok)
DEFAULT_CODEC = Path(__file__).resolve().parents[2] / "resources" / "models" / "codec-small"


class Transform(Protocol):
    """Maps ``[C, N]`` audio at ``rate`` to the audio that gets scored."""

    @property
    def name(self) -> str: ...

    def __call__(self, audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]: ...


@dataclass(frozen=True)
class Identity:
    """The plain protocol: score the audio as it is."""

    name: str = "identity"

    def __call__(self, audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        return audio, rate


@dataclass(frozen=True)
class CodecRoundTrip:
    """Encode + decode through the codec in ``folder`` (``codec.pt`` + ``codec_config.json``).

    Long audio goes through in chunks of ``chunk_s`` seconds that overlap by about one second
    and are cross-faded, so memory stays bounded for a song of any length.
    """

    folder: str
    chunk_s: float = 30.0

    @property
    def name(self) -> str:
        """``codec:<folder>:<hash of the weights>`` (part of the reference cache key)."""
        weights = Path(self.folder) / "codec.pt"
        st = weights.stat()
        tag = hashlib.sha1(f"{weights.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        return f"codec:{Path(self.folder).name}:{tag.hexdigest()[:10]}"

    def __call__(self, audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        from engine.audio import resample

        codec = _load_codec(self.folder)
        x = audio if rate == MODEL_RATE else resample(audio, rate, MODEL_RATE)
        y = np.stack([round_trip(codec, ch, self.chunk_s) for ch in np.asarray(x, np.float32)])
        if rate != MODEL_RATE:
            y = resample(y, MODEL_RATE, rate)
        n = audio.shape[-1]
        y = np.pad(y[:, :n], ((0, 0), (0, max(0, n - y.shape[-1]))))
        return y.astype(audio.dtype, copy=False), rate


@functools.lru_cache(maxsize=2)
def _load_codec(folder: str) -> Any:
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise StemtokError(f"--through-codec needs torch ({install_hint('train')})") from exc
    from engine.models.codec import load_codec

    torch.set_num_threads(1)  # scoring runs one song per process
    return load_codec(folder)


def round_trip(codec: Any, wave: np.ndarray, chunk_s: float = 30.0) -> np.ndarray:
    """Generative round trip of mono 48 kHz ``wave`` ``[N]`` -> ``[N]``, in cross-faded chunks
    (whole codec frames; 12 frames = 0.96 s of overlap)."""
    import torch

    from engine.chunks import process_in_chunks

    hop = int(codec.cfg.frame_hop)
    n = wave.shape[-1]
    padded = np.pad(wave, (0, (-n) % hop)).astype(np.float32)
    chunk = max(4, round(chunk_s * MODEL_RATE / hop)) * hop

    def one(piece: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tokens = codec.encode(torch.from_numpy(np.ascontiguousarray(piece))[None])
            out: np.ndarray = codec.decode(tokens)[0].numpy()
        return out

    return process_in_chunks(one, padded, chunk, min(12 * hop, chunk // 4))[:n]


def codec_transform(folder: str | Path | None = None) -> Transform:
    """The codec round trip of ``--through-codec`` (the shipped ``codec-small`` by default).

    Raises
    ------
    StemtokError
        When the folder holds no codec.
    """
    path = Path(folder) if folder is not None else DEFAULT_CODEC
    if not (path / "codec.pt").is_file() or not (path / "codec_config.json").is_file():
        raise StemtokError(f"--through-codec: {path} holds no codec (codec.pt + codec_config.json)")
    return CodecRoundTrip(str(path))


def resolve(through_codec: bool, codec: str | Path | None = None) -> Transform:
    """The transform for the chosen protocol."""
    return codec_transform(codec) if through_codec else Identity()

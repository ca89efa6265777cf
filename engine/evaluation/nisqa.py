"""NISQA v2.0 speech quality (Mittag et al., Interspeech 2021) in numpy: MOS and four dimensions.

NISQA predicts, from the degraded signal alone, the overall quality (MOS) and four quality
dimensions: noisiness, coloration, discontinuity and loudness, each on a 1-5 scale where higher
means less of that impairment. The paper we follow reports it on the vocal stem (its Table 2).

The weights (``nisqa.tar`` of the NISQA repository, CC BY-NC-SA 4.0) are not part of stemtok:
they are read from a path (:func:`weights_path`: ``--nisqa-weights``, ``$STEMTOK_NISQA_WEIGHTS``,
or ``../shared/weights/nisqa/nisqa.tar`` beside a source checkout). The file is a PyTorch
checkpoint; :mod:`engine.evaluation.torchzip` reads it without torch, and the network runs here
in numpy, so the ``eval`` extra needs no torch.

What happens to a signal, step for step as the ``nisqa`` package does for a file
(``tests/test_nisqa.py`` compares the two on the same files):

1. Mono (channels averaged) at 48 kHz, the rate of the NISQA corpus the model was trained on.
   NISQA itself scores a file at the file's own rate; we resample first, so every stem is
   scored at the model's rate whatever the song's rate.
2. Mel spectrogram: STFT with n_fft 4096, a 20-ms Hann window (960 samples), 10-ms hop (480),
   centred frames with reflect padding; magnitudes through 48 Slaney mel bands up to 20 kHz;
   ``20 log10(max(mel, 1e-4))``, clipped to 80 dB below the loudest bin (librosa's
   ``amplitude_to_db``). ``[48, T]``, ``T = N // 480 + 1``.
3. Segments: 15 frames wide (150 ms), every 4th frame: ``[W, 48, 15]``, ``W = ceil((T - 14) / 4)``.
4. Network: six conv layers with adaptive max pooling (one 384-d vector per segment), two
   self-attention layers (d 64, one head), then five attention-pooling heads, one per output.

NISQA accepts at most 1300 segments (52.1 s at 48 kHz) and refuses longer files. A longer
signal is cut into the fewest equal parts that fit, each part is scored as a file of its own,
and the scores are averaged weighted by the parts' lengths. A signal shorter than 15 frames
(0.14 s) cannot be scored.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import engine
from engine import dsp
from engine.errors import StemtokError
from engine.evaluation.perceptual import mono_at
from engine.evaluation.torchzip import CheckpointError, read_checkpoint

NISQA_RATE = 48_000
ENV_WEIGHTS = "STEMTOK_NISQA_WEIGHTS"
#: The outputs of the NISQA_DIM model, in the order of its pooling heads.
DIMENSIONS: tuple[str, ...] = ("mos", "noi", "dis", "col", "loud")
_BATCH = 128  # segments per pass through the CNN (bounds memory, not results)
_BN_EPS = 1e-5
_LN_EPS = 1e-5


@dataclass(frozen=True)
class NisqaScore:
    """NISQA's predictions (about 1-5, higher is better): overall MOS, noisiness, discontinuity,
    coloration, loudness."""

    mos: float
    noi: float
    dis: float
    col: float
    loud: float


@dataclass(frozen=True)
class NisqaConfig:
    """Features and network sizes of a NISQA_DIM checkpoint (rebuilt from its ``args``)."""

    n_fft: int
    hop_s: float
    win_s: float
    n_mels: int
    fmax: float
    seg_length: int
    seg_hop: int
    max_segments: int
    pool_1: tuple[int, int]
    pool_2: tuple[int, int]
    pool_3: tuple[int, int]
    nhead: int

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> NisqaConfig:
        """The config of checkpoint ``args``; ``ValueError`` for anything but NISQA_DIM with the
        CNN, self-attention and attention-pooling blocks of the published model."""
        want = {"model": "NISQA_DIM", "cnn_model": "adapt", "td": "self_att", "td_2": "skip"}
        for key, value in want.items():
            if args.get(key) != value:
                raise ValueError(f"{key} is {args.get(key)!r}, not {value!r}")
        if args.get("pool") != "att" or not args.get("pool_att_h") or args.get("td_sa_pos_enc"):
            raise ValueError("its pooling or positional encoding differs from NISQA v2.0's")
        if args.get("cnn_kernel_size") not in (3, (3, 3), [3, 3]):
            raise ValueError(f"cnn_kernel_size is {args.get('cnn_kernel_size')!r}, not 3")
        if args.get("cnn_fc_out_h"):
            raise ValueError("its CNN has an extra fully connected layer")
        return cls(
            n_fft=int(args["ms_n_fft"]),
            hop_s=float(args["ms_hop_length"]),
            win_s=float(args["ms_win_length"]),
            n_mels=int(args["ms_n_mels"]),
            fmax=float(args["ms_fmax"]),
            seg_length=int(args["ms_seg_length"]),
            seg_hop=int(args["ms_seg_hop_length"]),
            max_segments=int(args["ms_max_segments"]),
            pool_1=_pair(args["cnn_pool_1"]),
            pool_2=_pair(args["cnn_pool_2"]),
            pool_3=_pair(args["cnn_pool_3"]),
            nhead=int(args["td_sa_nhead"]),
        )

    def hop(self, rate: int = NISQA_RATE) -> int:
        return int(rate * self.hop_s)  # as NISQA: int(sr * seconds)

    def win(self, rate: int = NISQA_RATE) -> int:
        return int(rate * self.win_s)

    def max_samples(self, rate: int = NISQA_RATE) -> int:
        """The longest signal NISQA scores in one piece (``max_segments`` segments)."""
        frames = self.max_segments * self.seg_hop + self.seg_length - 1
        return frames * self.hop(rate) - 1  # N samples give N // hop + 1 frames

    def min_samples(self, rate: int = NISQA_RATE) -> int:
        """The shortest signal that gives one segment (and that reflect padding accepts)."""
        return max((self.seg_length - 1) * self.hop(rate), self.n_fft // 2 + 1)


def _pair(value: Any) -> tuple[int, int]:
    a, b = value
    return int(a), int(b)


# --------------------------------------------------------------------------- features


def melspec(x: np.ndarray, cfg: NisqaConfig, rate: int = NISQA_RATE) -> np.ndarray:
    """NISQA's mel spectrogram in dB of the mono ``[N]`` signal: ``[n_mels, N // hop + 1]``."""
    spec = dsp.stft(
        np.asarray(x, dtype=np.float32),
        cfg.n_fft,
        cfg.hop(rate),
        pad_mode="reflect",
        last_frame=True,
        win_length=cfg.win(rate),
    )
    fb = dsp.mel_filterbank(cfg.n_mels, cfg.n_fft, rate, 0.0, cfg.fmax)
    mel = np.matmul(fb, np.abs(spec))  # (M, F) @ (F, T)
    db = 10.0 * np.log10(np.maximum(np.float32(1e-8), mel * mel))  # librosa's amplitude_to_db
    return np.maximum(db, db.max() - np.float32(80.0)).astype(np.float32, copy=False)


def segments(spec: np.ndarray, cfg: NisqaConfig) -> np.ndarray:
    """``[M, T]`` -> ``[W, M, seg_length]``: windows of ``seg_length`` frames, every
    ``seg_hop``-th frame, ``W = ceil((T - seg_length + 1) / seg_hop)``."""
    if spec.shape[1] < cfg.seg_length:
        raise ValueError(f"NISQA needs at least {cfg.seg_length} frames, got {spec.shape[1]}")
    windows = np.lib.stride_tricks.sliding_window_view(spec, cfg.seg_length, axis=1)  # (M, n, L)
    return np.ascontiguousarray(windows[:, :: cfg.seg_hop].transpose(1, 0, 2))


def pieces(n: int, cfg: NisqaConfig, rate: int = NISQA_RATE) -> list[slice]:
    """The fewest equal parts of ``n`` samples that NISQA scores in one piece each."""
    count = max(1, math.ceil(n / cfg.max_samples(rate)))
    size = math.ceil(n / count)
    return [slice(i * size, min(n, (i + 1) * size)) for i in range(count)]


# --------------------------------------------------------------------------- network


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """2-D convolution, channels last: ``[B, H, W, C]`` and ``w`` ``[kh, kw, C, O]``."""
    kh, kw = w.shape[:2]
    xp = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (B,H',W',C,kh,kw)
    return np.tensordot(win, w, axes=([4, 5, 3], [0, 1, 2])) + b  # (B, H', W', O)


def _adaptive_max(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torch's ``adaptive_max_pool2d`` over axes 1 and 2 of ``[B, H, W, C]``: bin ``i`` of ``n``
    spans ``floor(i * L / n)`` to ``ceil((i + 1) * L / n)`` (max is separable by axis)."""
    for axis, n in ((1, size[0]), (2, size[1])):
        length = x.shape[axis]
        bins = [
            np.take(x, range(i * length // n, -(-(i + 1) * length // n)), axis=axis).max(
                axis=axis, keepdims=True
            )
            for i in range(n)
        ]
        x = np.concatenate(bins, axis=axis)
    return x


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(_LN_EPS)) * w + b


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _under(p: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries of ``p`` whose names start with ``prefix``, without it."""
    return {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}


class NisqaModel:
    """The NISQA_DIM network with its weights, in numpy (float32, inference only).

    ``model(segs)`` maps ``[W, n_mels, seg_length]`` segments of one signal to its five
    predictions ``[5]`` (:data:`DIMENSIONS` order).
    """

    def __init__(self, cfg: NisqaConfig, state: Mapping[str, np.ndarray]) -> None:
        self.cfg = cfg
        p = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        self.convs = [self._fold(p, i) for i in range(1, 7)]
        td = "time_dependency.model."
        self.linear = (p[td + "linear.weight"].T, p[td + "linear.bias"])
        self.norm = (p[td + "norm1.weight"], p[td + "norm1.bias"])
        n_layers = len({k.split(".")[3] for k in p if k.startswith(td + "layers.")})
        self.layers = [_under(p, f"{td}layers.{i}.") for i in range(n_layers)]
        self.pools = [_under(p, f"pool_layers.{i}.model.") for i in range(len(DIMENSIONS))]

    @staticmethod
    def _fold(p: Mapping[str, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray]:
        """Conv ``i`` with its batch norm folded in: ``[kh, kw, C, O]`` weights, ``[O]`` bias."""
        c, n = f"cnn.model.conv{i}.", f"cnn.model.bn{i}."
        scale = p[n + "weight"] / np.sqrt(p[n + "running_var"] + np.float32(_BN_EPS))
        w = p[c + "weight"] * scale[:, None, None, None]  # (O, C, kh, kw)
        b = (p[c + "bias"] - p[n + "running_mean"]) * scale + p[n + "bias"]
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0)), b

    def cnn(self, segs: np.ndarray) -> np.ndarray:
        """``[B, M, L]`` segments -> ``[B, 64 * pool_3[0]]`` features."""
        x = segs[..., None]  # (B, M, L, 1)
        pools = {0: self.cfg.pool_1, 1: self.cfg.pool_2, 3: self.cfg.pool_3}  # after convs 1, 2, 4
        for i, (w, b) in enumerate(self.convs):
            pad = (1, 0) if i == 5 else (1, 1)  # the last conv spans the width that is left
            x = np.maximum(_conv(x, w, b, pad), np.float32(0.0))
            if i in pools:
                x = _adaptive_max(x, pools[i])
        # (B, H, 1, C) -> (B, C * H), the order torch's view(-1, C * H) gives
        return x[:, :, 0, :].transpose(0, 2, 1).reshape(x.shape[0], -1)

    def _attention(self, x: np.ndarray, layer: Mapping[str, np.ndarray]) -> np.ndarray:
        """One post-norm self-attention layer over ``[W, D]``."""
        t, d = x.shape
        h = self.cfg.nhead
        qkv = x @ layer["self_attn.in_proj_weight"].T + layer["self_attn.in_proj_bias"]
        q, k, v = (a.reshape(t, h, d // h).transpose(1, 0, 2) for a in np.split(qkv, 3, axis=1))
        att = _softmax(q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(d // h)), axis=-1)
        out = (att @ v).transpose(1, 0, 2).reshape(t, d)  # (W, D)
        out = out @ layer["self_attn.out_proj.weight"].T + layer["self_attn.out_proj.bias"]
        x = _layer_norm(x + out, layer["norm1.weight"], layer["norm1.bias"])
        ff = np.maximum(x @ layer["linear1.weight"].T + layer["linear1.bias"], np.float32(0.0))
        ff = ff @ layer["linear2.weight"].T + layer["linear2.bias"]
        return _layer_norm(x + ff, layer["norm2.weight"], layer["norm2.bias"])

    @staticmethod
    def _pool(x: np.ndarray, head: Mapping[str, np.ndarray]) -> float:
        """Attention pooling over ``[W, D]`` and a linear output: one prediction."""
        hidden = np.maximum(x @ head["linear1.weight"].T + head["linear1.bias"], np.float32(0.0))
        att = _softmax(hidden @ head["linear2.weight"].T + head["linear2.bias"], axis=0)  # (W, 1)
        pooled = att.T @ x  # (1, D)
        return float((pooled @ head["linear3.weight"].T + head["linear3.bias"])[0, 0])

    def __call__(self, segs: np.ndarray) -> np.ndarray:
        feats = np.concatenate(
            [self.cnn(segs[i : i + _BATCH]) for i in range(0, len(segs), _BATCH)]
        )  # (W, 384)
        x = _layer_norm(feats @ self.linear[0] + self.linear[1], *self.norm)  # (W, 64)
        for layer in self.layers:
            x = self._attention(x, layer)
        return np.array([self._pool(x, head) for head in self.pools])


# --------------------------------------------------------------------------- weights and API


def default_weights() -> Path:
    """``../shared/weights/nisqa/nisqa.tar`` from the root of the checkout ``engine`` is in."""
    return Path(engine.__file__).resolve().parents[2] / "shared" / "weights" / "nisqa" / "nisqa.tar"


def weights_path(given: str | os.PathLike[str] | None = None) -> Path:
    """The weights file to use: ``given``, else ``$STEMTOK_NISQA_WEIGHTS``, else
    :func:`default_weights`."""
    if given:
        return Path(given)
    env = os.environ.get(ENV_WEIGHTS)
    return Path(env) if env else default_weights()


def _check_state(cfg: NisqaConfig, state: Mapping[str, np.ndarray]) -> None:
    need = [f"cnn.model.conv{i}.weight" for i in range(1, 7)]
    need += [f"pool_layers.{i}.model.linear3.weight" for i in range(len(DIMENSIONS))]
    need += ["time_dependency.model.linear.weight", "time_dependency.model.layers.0.norm2.bias"]
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"it has no {missing[0]}")
    if state["cnn.model.conv1.weight"].shape[1:] != (1, 3, 3):
        raise ValueError("its first conv layer does not take one 3x3 channel")
    fan_out = state["cnn.model.conv6.weight"].shape[0] * cfg.pool_3[0]
    if state["time_dependency.model.linear.weight"].shape[1] != fan_out:
        raise ValueError("its CNN and attention sizes disagree")
    if f"pool_layers.{len(DIMENSIONS)}.model.linear3.weight" in state:
        raise ValueError("it has more than five outputs")


@functools.lru_cache(maxsize=2)
def _load(path: str, size: int, mtime_ns: int) -> NisqaModel:
    try:
        ckpt = read_checkpoint(Path(path))
        if not isinstance(ckpt, Mapping) or "args" not in ckpt or "model_state_dict" not in ckpt:
            raise ValueError("no 'args' and 'model_state_dict' in it")
        cfg = NisqaConfig.from_args(ckpt["args"])
        state = ckpt["model_state_dict"]
        _check_state(cfg, state)
        model = NisqaModel(cfg, state)
        model(np.zeros((1, cfg.n_mels, cfg.seg_length), dtype=np.float32))  # every shape fits
        return model
    except (CheckpointError, ValueError, KeyError, TypeError) as exc:
        raise StemtokError(
            f"NISQA weights {path}: not NISQA v2.0's nisqa.tar ({exc}); pass the file from the "
            "NISQA repository with --nisqa-weights"
        ) from exc


def load_model(path: str | os.PathLike[str]) -> NisqaModel:
    """The model of weights file ``path`` (cached per file); :class:`StemtokError` in one line
    when the file is missing or is not NISQA v2.0's multidimensional model."""
    p = Path(path)
    if not p.is_file():
        raise StemtokError(
            f"NISQA weights {p}: {'a folder' if p.is_dir() else 'no such file'} (pass --nisqa-weights FILE or set {ENV_WEIGHTS} to "
            "NISQA v2.0's nisqa.tar, or leave nisqa out of --metrics)"
        )
    st = p.stat()
    return _load(str(p.resolve()), st.st_size, st.st_mtime_ns)


def nisqa_at_rate(x: np.ndarray, model: NisqaModel, rate: int = NISQA_RATE) -> NisqaScore:
    """NISQA of the mono ``[N]`` signal at ``rate``, as NISQA scores a file at that rate
    (longer signals in equal parts, averaged by length; see the module docstring)."""
    cfg = model.cfg
    if x.shape[-1] < cfg.min_samples(rate):
        raise ValueError(
            f"NISQA needs at least {cfg.min_samples(rate) / rate:.2f} s, got {x.shape[-1] / rate:.3f} s"
        )
    parts = pieces(x.shape[-1], cfg, rate)
    preds = np.stack([model(segments(melspec(x[p], cfg, rate), cfg)) for p in parts])
    weights = np.array([p.stop - p.start for p in parts], dtype=np.float64)
    mean = weights @ preds / weights.sum()
    return NisqaScore(**{k: float(v) for k, v in zip(DIMENSIONS, mean, strict=True)})


def nisqa(audio: np.ndarray, rate: int, weights: str | os.PathLike[str]) -> NisqaScore:
    """NISQA of a signal ``[C, N]`` or ``[N]`` at ``rate``: made mono, resampled to 48 kHz.

    Raises
    ------
    StemtokError
        The weights are missing or not NISQA's.
    ValueError
        The signal is shorter than 0.14 s.
    """
    return nisqa_at_rate(mono_at(audio, rate, NISQA_RATE), load_model(weights))

"""A model folder written by ``stemtok export``: find it, check it, open its sessions.

::

    <folder>/model_config.json   schema, sizes, token layout, rates, KV layout, sha256 of files
    <folder>/encoder.onnx  lm.onnx  codec_generative.onnx  codec_aligned.onnx  embed.npy
    <folder>/lm_fp16.onnx        (optional) the LM in float16, run on CUDA

A folder whose config has ``"prior"`` (written by ``stemtok export --refine``) runs a teacher
too: its aligned decoder refines that teacher's estimates (:func:`open_prior`).

Model names (``--model NAME``, :func:`model_dir`): ``default`` is the shipped generative model,
``$STEMTOK_MODEL`` or else ``resources/models/default`` (:func:`default_model_dir`); any other
bare name is ``resources/models/NAME`` (``teacher`` is the shipped teacher). Named folders are
looked for beside the installed ``engine`` package (a source checkout or a ``pip install .``),
then under the current directory. An existing folder is taken as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

import engine
from engine.errors import StemtokError
from engine.models.layout import TokenLayout
from engine.runtime.session import create_session, resolve_device

SCHEMA: Final[int] = 1
CONFIG_FILE: Final[str] = "model_config.json"
DEFAULT_NAME: Final[str] = "default"
FP16_LM: Final[str] = "lm_fp16.onnx"


def _candidates(name: str) -> list[Path]:
    """``resources/models/NAME`` beside the installed package, then under the current folder."""
    rel = Path("resources") / "models" / name
    return [Path(engine.__file__).resolve().parents[1] / rel, Path.cwd() / rel]


def default_model_dir() -> Path:
    """Where the default model lives (see the module docstring); raises when nowhere."""
    env = os.environ.get("STEMTOK_MODEL")
    if env:
        return Path(env)
    candidates = _candidates(DEFAULT_NAME)
    for folder in candidates:
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise StemtokError(
        f"no default model found (looked in {candidates[0]} and {candidates[1]}); set "
        "STEMTOK_MODEL to a folder made by 'stemtok export' or pass --model"
    )


def model_dir(model: str | os.PathLike[str] | None = None) -> Path:
    """The folder ``model`` stands for: ``None``/``"default"``, a bare name, or a path."""
    if model is None or os.fspath(model) == DEFAULT_NAME:
        return default_model_dir()
    path = Path(model)
    if path.is_dir():
        return path
    text = os.fspath(model)
    if "/" in text or os.sep in text or text.startswith("."):
        raise StemtokError(f"{path}: no such model folder")
    for folder in _candidates(text):
        if (folder / CONFIG_FILE).is_file():
            return folder
    where = " and ".join(str(c) for c in _candidates(text))
    raise StemtokError(
        f"no model named '{text}' (looked in {where}); give a folder made by 'stemtok export'"
    )


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1-MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_config(folder: Path, verify: bool = True) -> dict[str, Any]:
    """``model_config.json`` of ``folder``, its schema checked and (``verify``) every file's
    sha256 compared with the one recorded at export."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise StemtokError(
            f"{folder}: not a model folder (no {CONFIG_FILE}; make one with 'stemtok export')"
        )
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StemtokError(f"{path}: cannot read the model config ({exc})") from None
    if config.get("schema") != SCHEMA:
        raise StemtokError(
            f"{path}: model schema {config.get('schema')} is not {SCHEMA}; "
            "re-export the model with this version of stemtok"
        )
    for name, digest in config.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise StemtokError(f"{folder}: {name} is missing; re-export the model")
        if verify and sha256(file) != digest:
            raise StemtokError(f"{file}: checksum mismatch (damaged or replaced); re-export it")
    return config


@dataclass(frozen=True)
class Sizes:
    """The numbers the runtime needs from ``model_config.json``."""

    layout: TokenLayout
    dim: int
    n_layers: int
    n_kv_heads: int
    head_dim: int
    capacity: int
    kv_mode: str
    prefix_len: int
    sample_rate: int
    window: int  # samples per LM window (T codec frames)
    stft_n_fft: int
    stft_hop: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sizes:
        lay, lm, kv, rates = config["layout"], config["lm"], config["kv"], config["rates"]
        layout = TokenLayout(
            lay["n_levels"], lay["codebook_size"], lay["n_frames"], lay["n_tracks"]
        )
        return cls(
            layout=layout,
            dim=lm["dim"],
            n_layers=kv["n_layers"],
            n_kv_heads=kv["n_kv_heads"],
            head_dim=kv["head_dim"],
            capacity=kv["capacity"],
            kv_mode=kv["mode"],
            prefix_len=1 + lm["mel_frames"] // lm["enc_stride"],
            sample_rate=rates["sample_rate"],
            window=rates["window_samples"],
            stft_n_fft=rates["stft_n_fft"],
            stft_hop=rates["stft_hop"],
        )


def lm_file(config: dict[str, Any], device: str, precision: str) -> str:
    """The LM graph to run: ``lm_fp16.onnx`` on CUDA (``precision="auto"``) or when asked for
    (``"fp16"``) and the folder has one, ``lm.onnx`` (float32) otherwise."""
    if precision not in ("auto", "fp32", "fp16"):
        raise StemtokError(f"unknown precision {precision!r} (auto, fp32 or fp16)")
    has16 = FP16_LM in config.get("files", {})
    if precision == "fp16" and not has16:
        raise StemtokError(f"this model folder has no {FP16_LM}; run 'stemtok export --optimize'")
    if precision == "fp16" or (precision == "auto" and device == "cuda" and has16):
        return FP16_LM
    return "lm.onnx"


def open_prior(folder: Path, config: dict[str, Any], device: str, threads: int | None) -> Any:
    """The teacher (:class:`engine.runtime.teacher.TeacherModel`) whose estimates the aligned
    decoder of ``folder`` refines, or None. ``config["prior"]`` names it (``"teacher"``: the
    shipped one; or a folder) with the sha256 of its graph: the decoder was trained on that
    teacher's errors, so another one is refused rather than silently run."""
    prior = config.get("prior")
    if prior is None:
        return None
    from engine.runtime.teacher import GRAPH_FILE, TeacherModel

    where = model_dir(prior["teacher"])
    got = read_config(where, verify=False).get("files", {}).get(GRAPH_FILE)
    if got != prior["sha256"]:
        raise StemtokError(
            f"{folder}: its aligned decoder refines the teacher it was trained with, and "
            f"{where} holds another one; train the refinement again ('stemtok train codec "
            "--prior-teacher') and export it ('stemtok export --refine')"
        )
    return TeacherModel(where, device, threads)


class Model:
    """Sessions of a model folder on one device (``auto`` picks CUDA when it works here).

    ``precision``: ``auto`` runs the float16 LM graph on CUDA when the folder has one and the
    float32 graph on the CPU; ``fp32``/``fp16`` force one.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | None = None,
        device: str = "auto",
        threads: int | None = None,
        verify: bool = True,
        precision: str = "auto",
    ) -> None:
        self.folder = Path(folder) if folder is not None else default_model_dir()
        self.config = read_config(self.folder, verify)
        if self.config["lm"].get("decoding", "sequential") != "sequential":
            raise StemtokError(f"{self.folder}: only sequential-decoding models run here")
        self.sizes = Sizes.from_config(self.config)
        self.device = resolve_device(device)

        def open_(name: str) -> Any:
            return create_session(self.folder / name, self.device, threads)

        self.encoder = open_("encoder.onnx")
        self.threads = threads
        self.lm_name = lm_file(self.config, self.device, precision)
        self.use_lm(self.folder / self.lm_name)
        self.generative = open_("codec_generative.onnx")
        self.aligned = open_("codec_aligned.onnx")
        self.prior = open_prior(self.folder, self.config, self.device, threads)
        self.embed: np.ndarray = np.load(self.folder / "embed.npy")
        self.level_offset = np.arange(self.sizes.layout.n_levels) * self.sizes.layout.vocab_size

    def use_lm(self, path: Path) -> None:
        """Run the LM graph ``path`` (the folder's, or another export of the same model, e.g.
        for parity and benchmarks); its precision is read from its ``x`` input."""
        self.lm = create_session(path, self.device, self.threads)
        x_type = next(i.type for i in self.lm.get_inputs() if i.name == "x")
        self.lm_dtype = np.dtype(np.float16 if x_type == "tensor(float16)" else np.float32)

    def embed_ids(self, ids: np.ndarray) -> np.ndarray:
        """Ids ``[B, L, K]`` -> summed level embeddings ``[B, L, D]`` (float32)."""
        rows = self.embed[ids + self.level_offset]  # (B, L, K, D)
        out: np.ndarray = rows.sum(axis=2, dtype=np.float32)
        return out

    def encode(self, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-mel ``[B, n_mels, 4T]`` -> prefix ``[B, 1 + M, D]``, cond ``[B, T + 1, D]``."""
        pre, cond = self.encoder.run(None, {"mel": np.ascontiguousarray(mel, np.float32)})
        return pre, cond

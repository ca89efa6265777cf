"""``.stemtok`` projects: a JSON file (source path, mixer and view settings) with the stems stored
beside it in ``<name>.stems/`` as 32-bit float WAV, so reopening never separates again.

Every write is atomic (a temporary file renamed into place). A missing source is reported, not
fatal: the stems are all that playback and export need, and the source path is kept as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.editor.mixer import Strip
from engine.atomic import atomic_path, write_json
from engine.audio import read_audio, write_audio
from engine.constants import STEMS
from engine.errors import StemtokError

FORMAT = "stemtok-project"
VERSION = 1
SUFFIX = ".stemtok"
_PRIVATE = 0o600  # the project file and its confidence.npz: readable by their owner only


@dataclass(frozen=True)
class ProjectData:
    """Everything a project holds besides the audio."""

    source: str
    rate: int
    sample_format: str
    strips: dict[str, Strip] = field(default_factory=dict)
    master_db: float = 0.0
    view: dict[str, Any] = field(default_factory=dict)
    confidence_rate: float = 0.0


def stems_dir(project: Path) -> Path:
    return project.with_name(project.stem + ".stems")


def save(
    path: Path,
    data: ProjectData,
    stems: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray] | None = None,
    write_stems: bool = True,
) -> Path:
    """Write the project file and (unless ``write_stems`` is False and they exist) its stems."""
    path = path if path.suffix == SUFFIX else path.with_name(path.name + SUFFIX)
    folder = stems_dir(path)
    files = {name: f"{name}.wav" for name in stems}
    for name, audio in stems.items():
        if write_stems or not (folder / files[name]).is_file():
            write_audio(folder / files[name], audio, data.rate, bit_depth="32f", overwrite=True)
    if confidence:
        _save_npz(folder / "confidence.npz", confidence)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "source": data.source,
        "rate": data.rate,
        "sample_format": data.sample_format,
        "stems_dir": folder.name,
        "stems": files,
        "strips": {k: asdict(v) for k, v in data.strips.items()},
        "master_db": data.master_db,
        "view": data.view,
        "confidence_rate": data.confidence_rate,
    }
    write_json(path, doc, indent=2, mode=_PRIVATE)
    return path


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path, mode=_PRIVATE) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Loaded:
    data: ProjectData
    stems: dict[str, np.ndarray]
    confidence: dict[str, np.ndarray]
    source_missing: bool


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StemtokError(f"{path}: no such project") from None
    except (OSError, ValueError) as exc:
        raise StemtokError(f"{path}: not a readable stemtok project ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StemtokError(f"{path}: not a stemtok project")
    if doc.get("version") != VERSION:
        raise StemtokError(f"{path}: project version {doc.get('version')} (this stemtok reads 1)")
    return doc


def load(path: Path) -> Loaded:
    """Read a project; raises :class:`StemtokError` when its stems are missing or do not match."""
    doc = _read_doc(path)
    folder = path.parent / doc["stems_dir"]
    stems: dict[str, np.ndarray] = {}
    for name in (n for n in STEMS if n in doc["stems"]):
        file = folder / doc["stems"][name]
        if not file.is_file():
            raise StemtokError(f"{file}: stem file missing (the project cannot be opened)")
        audio, rate = read_audio(file)
        if rate != doc["rate"]:
            raise StemtokError(f"{file}: {rate} Hz, the project says {doc['rate']} Hz")
        stems[name] = audio
    if len({a.shape for a in stems.values()}) > 1 or not stems:
        raise StemtokError(f"{folder}: the stems differ in length or channels")
    conf: dict[str, np.ndarray] = {}
    if (folder / "confidence.npz").is_file():
        with np.load(folder / "confidence.npz") as z:
            conf = {k: z[k] for k in z.files}
    strips = {k: Strip(**v) for k, v in doc.get("strips", {}).items()}
    data = ProjectData(
        doc["source"],
        int(doc["rate"]),
        doc.get("sample_format", "float32"),
        strips,
        float(doc.get("master_db", 0.0)),
        dict(doc.get("view", {})),
        float(doc.get("confidence_rate", 0.0)),
    )
    return Loaded(data, stems, conf, not Path(doc["source"]).is_file())

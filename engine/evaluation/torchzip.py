"""Read a PyTorch checkpoint (``torch.save``'s zip format) into numpy, without torch.

The file is a zip archive: ``<name>/data.pkl`` (a pickle of the saved object) and
``<name>/data/<key>`` (the raw bytes of each tensor storage, little-endian). The pickle names
each storage by a persistent id ``("storage", FloatStorage, key, location, numel)`` and builds
tensors with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``.

Only what a plain checkpoint needs is allowed: dicts, lists, tuples, numbers, strings,
``collections.OrderedDict``, typed storages and ``_rebuild_tensor_v2``. Any other global in the
pickle is refused (:class:`CheckpointError`), so reading a file never runs code from it.
Tensors come back as C-contiguous numpy arrays.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

#: Typed storages torch writes, by class name, and their numpy dtypes.
STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a PyTorch zip checkpoint this reader accepts."""


class _StorageType:
    """Stands for ``torch.<Name>Storage`` in the pickle: just its dtype."""

    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, STORAGE_DTYPES[name]


def _rebuild_tensor_v2(
    storage: np.ndarray,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *_: Any,
) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` for a numpy ``storage``: a strided view, copied."""
    if len(size) != len(stride):
        raise CheckpointError("a tensor's size and stride disagree")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or min(stride, default=0) < 0 or last >= storage.size:
        raise CheckpointError("a tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride]
    )
    return view.copy()  # C order (ascontiguousarray would make a 0-d tensor 1-d)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"the pickle needs {module}.{name}, which a checkpoint never needs")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unknown persistent id {pid!r:.60}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise CheckpointError(f"unknown storage type {kind!r:.60}")
        try:
            raw = self.archive.read(f"{self.prefix}data/{key}")
        except KeyError as exc:
            raise CheckpointError(f"storage {key} is missing from the archive") from exc
        if len(raw) < numel * kind.dtype.itemsize:
            raise CheckpointError(f"storage {key} is shorter than its {numel} elements")
        return np.frombuffer(raw, dtype=kind.dtype, count=numel)


def read_checkpoint(path: Path) -> Any:
    """The object ``torch.save`` wrote to ``path``, with every tensor as a numpy array.

    Raises
    ------
    CheckpointError
        Not a zip archive, no ``data.pkl``, a broken pickle, or a pickle that needs anything
        beyond plain containers, storages and tensors.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError("not a PyTorch checkpoint (not a zip archive)") from exc
    with archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise CheckpointError("not a PyTorch checkpoint (no data.pkl in the archive)")
        prefix = pkl[0][: -len("data.pkl")]
        with archive.open(pkl[0]) as f:
            try:
                return _Unpickler(f, archive, prefix).load()
            except CheckpointError:
                raise
            except Exception as exc:  # a damaged pickle can fail in many ways
                raise CheckpointError(f"its data.pkl cannot be read ({exc})") from exc

"""Sessions: CUDA requested on a machine without it falls back to CPU with one warning line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from engine.errors import StemtokError
from engine.runtime import session
from engine.runtime.probe_model import relu_model_bytes


def test_probe_model_runs() -> None:
    s = session.create_session(relu_model_bytes(), "cpu")
    (y,) = s.run(None, {"x": np.array([-2.0], np.float32)})
    assert y.tolist() == [0.0]


def test_cuda_falls_back_quietly_with_one_line(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    if session.cuda_usable():
        pytest.skip("this machine has a working CUDA")
    session._announce.cache_clear()
    with caplog.at_level(logging.INFO, logger="stemtok.runtime"):
        for _ in range(3):
            s = session.create_session(relu_model_bytes(), "cuda")
    assert s.get_providers() == ["CPUExecutionProvider"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "running on CPU" in lines[0]
    assert caplog.records[0].levelno == logging.WARNING and "CUDA was asked for" in lines[0]
    assert "onnxruntime" not in capfd.readouterr().err.lower()  # no loader pages from C++


def test_bad_model_and_device_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00not a model")
    with pytest.raises(StemtokError, match="cannot load ONNX model"):
        session.create_session(bad, "cpu")
    with pytest.raises(StemtokError, match="unknown device"):
        session.resolve_device("tpu")

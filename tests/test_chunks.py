"""Cross-faded chunk processing: exact for identity, linear maps, any length and chunk size."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.chunks import chunk_starts, process_in_chunks


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), chunk=st.integers(2, 900), fade_frac=st.floats(0, 0.9))
def test_identity_and_gain_come_back_exactly(n: int, chunk: int, fade_frac: float) -> None:
    fade = min(int(chunk * fade_frac), chunk - 1)
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    np.testing.assert_allclose(process_in_chunks(lambda c: c, x, chunk, fade), x, atol=1e-5)
    two = process_in_chunks(lambda c: np.stack([c, -2 * c]), x, chunk, fade)
    assert two.shape == (2, n)
    np.testing.assert_allclose(two[1], -2 * x, atol=1e-5)
    starts = chunk_starts(n, chunk, fade)
    assert starts[0] == 0 and starts[-1] + chunk >= n
    assert all(b - a == chunk - fade for a, b in itertools.pairwise(starts))


def test_bad_sizes() -> None:
    with pytest.raises(ValueError):
        chunk_starts(10, 4, 4)
    with pytest.raises(ValueError):
        chunk_starts(10, 0, 0)

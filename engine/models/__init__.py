"""Neural networks of stemtok (torch; needed for training and export only).

- :mod:`engine.models.codec_config` — the codec's frozen config (``small`` / ``paper``).
- :mod:`engine.models.rvq` — residual vector quantisation with EMA codebooks.
- :mod:`engine.models.codec` — the dual-path codec: encoders, generative and aligned decoders.
- :mod:`engine.models.codec_dsp` — torch twins of :mod:`engine.dsp` (STFT, iSTFT, log-mel,
  SI-SDR).

Nothing here is imported by the inference path, which runs ONNX graphs with numpy around them.
"""

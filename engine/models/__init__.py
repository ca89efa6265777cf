"""Neural networks of stemtok (torch; needed for training and export only).

- :mod:`engine.models.codec_config`, :mod:`engine.models.lm_config`,
  :mod:`engine.models.teacher_config` — each model's frozen config, training config and named
  presets (no torch).
- :mod:`engine.models.weights` — weights on disk: a state dict, or a run's latest checkpoint.
- :mod:`engine.models.rvq` — residual vector quantisation with EMA codebooks.
- :mod:`engine.models.codec` — the dual-path codec: encoders, generative and aligned decoders.
- :mod:`engine.models.codec_dsp` — torch twins of :mod:`engine.dsp` (STFT, iSTFT, log-mel,
  SI-SDR).

Nothing here is imported by the inference path, which runs ONNX graphs with numpy around them.
"""

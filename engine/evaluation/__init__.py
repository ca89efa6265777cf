"""Evaluation: the paper's metrics, sample-level and spectral metrics, baselines, reports.

Modules (import what you need; nothing heavy is imported here):

- :mod:`~engine.evaluation.metrics` — SI-SDR, BSS-Eval v4 SDR, uSDR, MR-STFT, log-mel L1, silence.
- :mod:`~engine.evaluation.perceptual` — ViSQOL (visqol-python) and DNSMOS (speechmos' model).
- :mod:`~engine.evaluation.nisqa` — NISQA v2.0 (MOS and four dimensions) in numpy, weights from a
  path; :mod:`~engine.evaluation.torchzip` reads its PyTorch checkpoint without torch.
- :mod:`~engine.evaluation.baselines` — mixture floor, oracle ratio masks, classical DSP.
- :mod:`~engine.evaluation.systems` — system names, external estimate folders.
- :mod:`~engine.evaluation.transforms` — the codec protocol hook (``--through-codec``).
- :mod:`~engine.evaluation.runner` — isolated separation with RTF and peak RSS.
- :mod:`~engine.evaluation.scoring` / :mod:`~engine.evaluation.aggregate` — per song, per run.
- :mod:`~engine.evaluation.harness` — ``run_eval``: the whole run as a library call.
- :mod:`~engine.evaluation.report` / :mod:`~engine.evaluation.figures` — JSON, Markdown, HTML.
- :mod:`~engine.evaluation.synthetic` — tiny numpy songs for tests.
"""

"""Training recipes (torch): :mod:`engine.training.codec` for the codec, and the shared
checkpoint/log/schedule utilities in :mod:`engine.training.common`.
"""

"""Separate a whole music library, on this machine or across a Ray cluster.

::

    plan_library(SRC, OUT, settings)      every audio file under SRC, less the songs done
    LocalExecutor | RayExecutor           workers, each with one separator loaded for the run
    run_library(plan, executor, OUT)      records appended to OUT/manifest.jsonl as songs finish

The per-song work (:func:`~engine.library.jobs.process_song`) is the same on every engine, so
both give the same bytes for the same song; a run killed at any moment and started again does
only what is not done.
"""

from engine.library.jobs import MANIFEST, Job, Settings, process_song
from engine.library.plan import Plan, Throughput, plan_library, read_manifest, run_library

__all__ = [
    "MANIFEST",
    "Job",
    "Plan",
    "Settings",
    "Throughput",
    "plan_library",
    "process_song",
    "read_manifest",
    "run_library",
]

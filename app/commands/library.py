"""``stemtok library SRC -o OUT``: every song under a folder tree, on a local process pool or a
Ray cluster, resumable, with a manifest of what was done."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.commands.separate import add_input_args, add_output_args, output_options
from engine.errors import StemtokError

if TYPE_CHECKING:
    from engine.library import Plan, Settings
    from engine.library.plan import Executor, Record

EXAMPLES = """\
Examples:
  stemtok library music/ -o stems                   a process per core on this machine
  stemtok library music/ -o stems --model teacher --format flac
  stemtok library music/ -o stems --engine ray      a local Ray cluster (or $RAY_ADDRESS)
  stemtok library /shared/music -o /shared/stems --engine ray --address auto   from a machine of a running cluster

OUT/<path under SRC without the extension>/<stem>.<format> per song (the folder appears only
when the song is complete), and OUT/manifest.jsonl: one JSON line per finished song (source
path, size and sha256, model and its sha256, stems, seconds, real-time factor, status or
error). Run the same command again after an interruption: finished songs are skipped.
"""

log = logging.getLogger("stemtok.library")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "library",
        help="separate a whole folder tree of songs, resumably, here or on a Ray cluster",
        description="Separate every audio file under SRC into OUT, several songs at a time "
        "(each worker keeps one model loaded). A song that cannot be read is recorded with its "
        "error and the others go on.",
        epilog=EXAMPLES,
    )
    p.add_argument("src", type=Path, metavar="SRC", help="folder of songs (searched recursively)")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="OUT", help="output folder")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default): worker processes on this machine; ray: actors on a Ray cluster "
        "(needs the 'cluster' extra)",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster to use (default: $RAY_ADDRESS, else a new one on this machine)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="songs at a time (default: local, one per core; ray, one per CPU of the cluster, "
        "or per GPU with --device cuda)",
    )
    add_input_args(p, threads="1 per worker")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.library import Settings, plan_library

    stems, depth = output_options(args)
    if args.address and args.engine != "ray":
        raise StemtokError("--address is for --engine ray")
    for option in ("workers", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise StemtokError(f"--{option} must be at least 1, not {value}")
    settings = Settings(
        model=args.model,
        mode=args.mode,
        fmt=args.format,
        depth=depth,
        stems=tuple(stems),
        seed=args.seed,
        device=args.device,
        threads=args.threads or 1,
    )
    plan = plan_library(args.src, args.out, settings, args.overwrite)
    if plan.done:
        failed = f" ({plan.failed} of them failed)" if plan.failed else ""
        log.info(
            "%d of %d songs already done%s; %d to go", plan.done, plan.total, failed, len(plan.todo)
        )
    if not plan.todo:
        return 1 if plan.failed else 0
    executor = open_executor(args, settings, plan.todo[0].model_sha256)
    try:
        return separate_all(plan, executor, args)
    finally:
        executor.close()


def open_executor(args: argparse.Namespace, settings: Settings, model_sha256: str) -> Executor:
    if args.engine == "ray":
        from engine.library.ray_cluster import RayExecutor

        return RayExecutor(settings, model_sha256, args.workers, args.address)
    from engine.library.local import LocalExecutor

    return LocalExecutor(settings, model_sha256, args.workers or os.cpu_count() or 1)


def separate_all(plan: Plan, executor: Executor, args: argparse.Namespace) -> int:
    """Run the plan with a progress line (songs done, songs per minute, time left) and one line
    per failed song; a summary at the end."""
    from engine.library import Throughput, run_library

    counter = Throughput(len(plan.todo))
    bar = _bar(len(plan.todo), args.quiet)
    failed = 0

    def show(record: Record) -> None:
        nonlocal failed
        counter.add()
        if record["status"] != "ok":
            failed += 1
            error, name = record["error"], record["source"]
            _write(
                bar, f"stemtok: error: {error if Path(name).name in error else name + ': ' + error}"
            )
        if bar is not None:
            bar.set_description_str(counter.line(), refresh=False)
            bar.update(1)

    started = time.monotonic()
    try:
        run_library(plan, executor, args.out, show)
    finally:
        if bar is not None:
            bar.close()
    took = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - started))
    done = counter.done - failed
    print(
        f"stemtok: {counter.done} songs in {took} ({counter.per_minute():.1f} songs/min): "
        f"{done} separated, {failed} failed; {args.out / 'manifest.jsonl'}",
        file=sys.stderr,
    )
    return 1 if failed or plan.failed else 0


def _bar(total: int, quiet: bool) -> Any:
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=f"0/{total} songs",
        file=sys.stderr,
        bar_format="{desc} |{bar}|",
        leave=False,
    )


def _write(bar: Any, line: str) -> None:
    if bar is None:
        print(line, file=sys.stderr)
    else:
        bar.write(line, file=sys.stderr)

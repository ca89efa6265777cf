"""Train the teacher on a lent GPU machine for a fixed time and bring back an exported model.

    bash scripts/gpu_teacher.sh --minutes 8 --init resources/models/teacher --out "$OUT"

(``gpu_teacher.sh`` installs the wheels carried in ``.whl`` first; docs/teacher-report.md,
"Training on a lent GPU", has the whole call.) One line per step:

1. imports: which of the packages the run needs are missing, in one line (exit 2 when training
   cannot run; without onnx or onnxruntime the model comes back as float16 ``teacher.pt``);
2. data: songs rendered by the factory's numpy backend (no system packages) on all cores but
   one for ``--render-seconds`` (the songs finished by then), plus sets carried in (``--data``);
3. training: :func:`engine.training.teacher.train_teacher` for ``--minutes`` of wall clock
   (one cosine over them), from ``--init`` or from scratch, batches made by worker processes,
   bf16 autocast and TF32 matrix products on CUDA; a timer stops it in time for the export
   whatever the setup cost (``--deadline-minutes``, the whole script);
4. export: the best model on the rendered ``valid`` split (the last one without it) as a
   teacher folder with float16 weights (``stemtok export --teacher RUN --weights float16``);
5. OUT: ``model/teacher.onnx``, ``model/model_config.json``, ``train.log``, ``metrics.jsonl``,
   ``summary.json``, each checked against what comes back from the machine (at most 8 files of
   16 MiB); the logs are copied there every 30 s, so a run killed at its limit still tells.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NEEDED = ("numpy", "scipy", "torch", "pedalboard", "mido", "tqdm")  # training cannot do without
EXPORT = ("onnx", "onnxruntime")  # without them: teacher.pt in float16, exported here
MAX_FILES, MAX_BYTES = 8, 16 * 2**20  # what comes back from the device machine
MAX_MINUTES = 9.0
EXPORT_RESERVE_MIN = 0.75  # export, parity and copying after training
LOG_FILES = ("train.log", "metrics.jsonl")


def say(line: str) -> None:
    print(f"gpu_teacher: {line}", flush=True)


def missing_imports() -> list[str]:
    out = []
    for name in (*NEEDED, *EXPORT):
        try:
            importlib.import_module(name)
        except Exception:  # an import can fail in other ways than ModuleNotFoundError
            out.append(name)
    return out


# --------------------------------------------------------------------------- configs
def teacher_config(name: str) -> Any:
    """``tiny`` (tests), ``small`` (the shipped teacher's sizes) or ``large`` (the largest
    whose float16 weights still fit one 16-MiB file: 7.5 M parameters)."""
    from engine.models.teacher_config import TeacherConfig

    configs = {
        "tiny": TeacherConfig.named(
            "small", name="tiny", n_bands=6, dim=16, depth=1, heads=2, mask_mult=1
        ),
        "small": TeacherConfig.named("small"),
        "large": TeacherConfig.named("small", name="large", dim=128, depth=6, heads=8, mask_mult=1),
    }
    return configs[name]


def float16_bytes(cfg: Any) -> int:
    import torch

    from engine.models.roformer import BandSplitRoformer, count_parameters

    with torch.device("meta"):
        return 2 * count_parameters(BandSplitRoformer(cfg)) + 256 * 1024  # + graph and config


# --------------------------------------------------------------------------- data
def render_main(argv: list[str]) -> int:
    """The renderer child: ``render FOLDER MINUTES SEED JOBS MIN_S MAX_S``."""
    from engine.data.factory import SynthConfig, synth

    folder, minutes, seed, jobs, lo, hi = argv
    cfg = SynthConfig(
        float(minutes), int(seed), backend="numpy", min_seconds=float(lo), max_seconds=float(hi)
    )
    synth(cfg, Path(folder), jobs=int(jobs))
    return 0


def finished_songs(folder: Path) -> dict[str, int]:
    return {
        split: len(list((folder / split).glob("[!.]*/song.json")))
        for split in ("train", "valid", "test")
    }


def render(args: argparse.Namespace, folder: Path) -> dict[str, int]:
    """Songs rendered for ``--render-seconds`` (the renderer's process group is ended then;
    half-written songs are removed)."""
    cmd = [
        sys.executable,
        __file__,
        "render",
        str(folder),
        str(args.render_minutes),
        str(args.seed),
        str(args.jobs),
        *map(str, args.song_seconds),
    ]
    child = subprocess.Popen(cmd, start_new_session=True)
    end = time.monotonic() + args.render_seconds
    while time.monotonic() < end and child.poll() is None:
        time.sleep(1.0)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    for partial in folder.glob("*/.*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
    return finished_songs(folder)


# --------------------------------------------------------------------------- OUT
def check_out(out: Path) -> dict[str, int]:
    """Sizes of the files under ``out``; raises ``SystemExit`` when they would not come back."""
    files = {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}
    bad = [f"{name} ({size / 2**20:.1f} MiB)" for name, size in files.items() if size > MAX_BYTES]
    if bad or len(files) > MAX_FILES:
        raise SystemExit(
            f"gpu_teacher: OUT breaks the limits ({len(files)} files, at most "
            f"{MAX_FILES}; over 16 MiB: {', '.join(bad) or 'none'})"
        )
    return files


def copy_logs(run: Path, out: Path) -> None:
    """The run's logs into OUT (the end of a log that outgrew 16 MiB)."""
    for name in LOG_FILES:
        src = run / name
        if src.is_file():
            data = src.read_bytes()
            (out / name).write_bytes(data[-MAX_BYTES:])


def keep_copying(run: Path, out: Path, stop: threading.Event) -> None:
    while not stop.wait(30.0):
        copy_logs(run, out)


# --------------------------------------------------------------------------- training
def start_weights(init: Path | None, cfg: Any) -> Any:
    if init is None:
        return None
    from export.teacher import load_source

    model, _ = load_source(init)
    if model.cfg != cfg:
        raise SystemExit(
            f"gpu_teacher: {init} is a teacher of another config than --config "
            f"{cfg.name} (start it from scratch or pick its config)"
        )
    return model.state_dict()


def train(args: argparse.Namespace, cfg: Any, data: list[Path], run: Path, minutes: float) -> Any:
    import torch

    from engine.models.teacher_config import TeacherTrainConfig
    from engine.training.teacher import train_teacher

    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in float32
        torch.backends.cudnn.allow_tf32 = True
    bf16 = cuda and torch.cuda.is_bf16_supported()
    cores = os.cpu_count() or 2
    tcfg = TeacherTrainConfig(
        lr=args.lr or (3e-4 if args.init else 1e-3),
        schedule="cosine",
        batch_size=args.batch_size or (16 if cuda else 2),
        crop_seconds=args.crop_seconds,
        minutes=minutes,
        checkpoint_minutes=60.0,
        log_every=args.log_every or (50 if cuda else 5),
        eval_every=args.eval_every or (250 if cuda else 20),
        seed=args.seed,
        precision=args.precision or ("bfloat16" if bf16 else "float32"),
        workers=cores - 2 if args.workers is None and cuda else args.workers or 0,
    )
    say(
        f"training '{cfg.name}' for {minutes:.2f} min on {'cuda' if cuda else 'cpu'}: batch "
        f"{tcfg.batch_size}, {tcfg.precision}, {tcfg.workers} batch workers, lr {tcfg.lr:g}"
    )
    return train_teacher(
        cfg,
        tcfg,
        data,
        run,
        device="cuda" if cuda else "cpu",
        progress=False,
        echo=None,
        init=start_weights(args.init, cfg),
        session_minutes=minutes,
    )


def export(run: Path, out: Path) -> str:
    """The best (else the last) model of ``run`` into ``out``; returns what was written."""
    source = run / "best" if (run / "best" / "teacher.pt").is_file() else run
    try:
        from export.teacher import export_teacher

        demo = REPO / "resources" / "demo" / "demo.flac"
        export_teacher(
            source,
            out,
            overwrite=True,
            parity_audio=demo,
            weights="float16",
            echo=lambda line: say(f"export: {line}"),
        )
        return f"teacher.onnx with float16 weights, from {source.name}"
    except Exception as exc:  # onnx missing or an exporter of another torch version failing
        import torch

        from engine.models.roformer import load_teacher

        say(f"no ONNX export here ({type(exc).__name__}: {exc}); float16 teacher.pt instead")
        model = load_teacher(source)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.half() for k, v in model.state_dict().items()}, out / "teacher.pt")
        model.cfg.save(out)
        return f"teacher.pt in float16, from {source.name}: export it after fetching"


# --------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="where the results go ($OUT)")
    p.add_argument("--minutes", type=float, default=8.0, help="training wall clock (at most 9)")
    p.add_argument("--config", choices=("tiny", "small", "large"), default="small")
    p.add_argument(
        "--init", type=Path, help="start from this teacher (e.g. resources/models/teacher)"
    )
    p.add_argument("--data", type=Path, action="append", default=[], help="a set carried in")
    p.add_argument("--render-seconds", type=float, default=40.0, help="0: render nothing")
    p.add_argument("--render-minutes", type=float, default=600.0, help="audio the renderer plans")
    p.add_argument(
        "--song-seconds", type=float, nargs=2, default=(30.0, 75.0), metavar=("MIN", "MAX")
    )
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument(
        "--workers", type=int, help="batch workers (default: cores - 2 on CUDA, 0 on CPU)"
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--crop-seconds", type=float, default=3.0)
    p.add_argument("--lr", type=float, help="peak rate (default 3e-4 with --init, else 1e-3)")
    p.add_argument("--precision", choices=("float32", "bfloat16"), help="default: bf16 on CUDA")
    p.add_argument("--log-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--device", choices=("auto", "cpu"), default="auto")
    p.add_argument("--deadline-minutes", type=float, default=9.4, help="the whole script's time")
    p.add_argument(
        "--work", type=Path, default=Path("/tmp/stemtok-gpu"), help="data and run folder"
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def choose_data(carried: list[Path], rendered: Path, songs: dict[str, int]) -> list[Path]:
    """The sets to train on; the first one's ``valid`` split validates (a carried set's when
    it has one: it is likely the closer to what the teacher is scored on)."""
    mine = [rendered] if songs.get("train") else []
    if carried and (carried[0] / "valid").is_dir():
        return [*carried, *mine]
    return [*mine, *carried]


def last_records(run: Path) -> dict[str, Any]:
    """The last step and validation records of a run, and its best model's record."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    steps = [r for r in rows if "loss" in r]
    valid = [r for r in rows if "valid" in r]
    best = run / "best" / "best.json"
    return {
        "last_step": steps[-1] if steps else None,
        "last_valid": valid[-1] if valid else None,
        "validations": len(valid),
        "best": json.loads(best.read_text()) if best.is_file() else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if argv[:1] == ["render"]:
        return render_main(argv[1:])
    t0 = time.monotonic()
    args = parse(argv)
    if not 0 < args.minutes <= MAX_MINUTES:
        raise SystemExit(f"gpu_teacher: --minutes must be in (0, {MAX_MINUTES:g}]")
    gone = missing_imports()
    say(f"missing packages: {', '.join(gone)}" if gone else "every package the run needs is here")
    if needed := [n for n in gone if n in NEEDED]:
        raise SystemExit(
            f"gpu_teacher: cannot train without {', '.join(needed)}: carry their "
            "wheels in .whl (docs/teacher-report.md, 'Training on a lent GPU')"
        )
    import torch

    from engine.training.common import stop_on_sigterm

    stop_on_sigterm()  # the deadline timer's SIGTERM ends training with a checkpoint
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
    say(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, {gpu}, {os.cpu_count()} cores"
    )
    cfg = teacher_config(args.config)
    if (size := float16_bytes(cfg)) > MAX_BYTES:
        raise SystemExit(
            f"gpu_teacher: config '{cfg.name}' needs {size / 2**20:.1f} MiB of float16 "
            "weights, over the 16 MiB a file may have to come back"
        )
    out, work = args.out.resolve(), args.work.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    run, rendered = work / "run", work / "synth"
    times: dict[str, float] = {}
    songs = render(args, rendered) if args.render_seconds > 0 else {}
    times["render_s"] = round(time.monotonic() - t0, 1)
    say(f"rendered songs {songs} in {times['render_s']} s (numpy backend, {args.jobs} jobs)")
    data = choose_data(args.data, rendered, songs)
    if not data:
        raise SystemExit("gpu_teacher: no training songs (render longer or carry a set: --data)")
    left = args.deadline_minutes - (time.monotonic() - t0) / 60 - EXPORT_RESERVE_MIN
    minutes = min(args.minutes, left)
    if minutes < 0.05:
        raise SystemExit(
            f"gpu_teacher: no time left to train before the {args.deadline_minutes:g}-min deadline"
        )
    stop = threading.Event()
    threading.Thread(target=keep_copying, args=(run, out, stop), daemon=True).start()
    timer = threading.Timer(60 * max(left, 0.0) + 5.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    t1 = time.monotonic()
    try:
        train(args, cfg, data, run, minutes)
    except KeyboardInterrupt:
        say("training stopped by the deadline (its last checkpoint and model are written)")
    finally:
        timer.cancel()
        stop.set()
    times["train_s"] = round(time.monotonic() - t1, 1)
    if not (run / "teacher.pt").is_file():
        copy_logs(run, out)
        raise SystemExit("gpu_teacher: training stopped before its first step: nothing to export")
    t2 = time.monotonic()
    written = export(run, out / "model")
    times["export_s"] = round(time.monotonic() - t2, 1)
    copy_logs(run, out)
    summary = {
        "config": asdict(cfg),
        "init": str(args.init) if args.init else None,
        "device": gpu,
        "torch": torch.__version__,
        "minutes": minutes,
        "data": {"sets": [str(d) for d in data], "rendered_songs": songs},
        "model": written,
        **last_records(run),
        "train_config": json.loads((run / "teacher_train_config.json").read_text()),
        "times": times | {"total_s": round(time.monotonic() - t0, 1)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary["files"] = check_out(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    files = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in check_out(out).items())
    say(f"done in {summary['times']['total_s']} s: {written}; {out}: {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

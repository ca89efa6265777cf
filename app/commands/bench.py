"""``stemtok bench``: real-time factor, peak memory and decode speed of the separator.

Every input length runs in a fresh child process (``python -m app.commands.bench --child``) so
its peak RSS (``ru_maxrss``) is that run's alone. The input is a deterministic stereo 44.1 kHz
test song (the demo song looped when it exists, else tones and noise) of the given length.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import StemtokError, install_hint

EXAMPLES = """\
Examples:
  stemtok bench                                  30 s, 3 min and 10 min on every device here
  stemtok bench --seconds 180 --device cpu --json bench.json
  stemtok bench --seconds 30 --model resources/models/default --model /tmp/growing-kv
  stemtok bench --seconds 60 --model default --model teacher --peer --threads 2
"""

RATE = 44100


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "bench",
        help="measure speed and memory",
        description="Separate test songs of each length in a fresh process and report the "
        "real-time factor (processing time / song length), peak RSS, model load time and LM "
        "decode steps per second.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", default="30,180,600", help="input lengths, comma-separated")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="all")
    p.add_argument("--mode", choices=("aligned", "generative"), default="aligned")
    p.add_argument(
        "--model",
        type=Path,
        action="append",
        help="model name (default, teacher) or folder; repeatable (default: the default model)",
    )
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--json", type=Path, metavar="F", help="write the results to F")
    p.add_argument(
        "--in-memory",
        action="store_true",
        help="measure Separator.separate on arrays (the library API) instead of the streamed "
        "file-to-files path of 'stemtok separate'",
    )
    p.add_argument(
        "--peer",
        action="store_true",
        help="also run HTDemucs (the demucs package, random weights: speed does not depend on "
        "them) on the CPU with torch, for comparison",
    )
    p.set_defaults(func=run)


def _devices(choice: str) -> list[str]:
    from engine.runtime.session import cuda_usable

    if choice == "all":
        return ["cpu", "cuda"] if cuda_usable() else ["cpu"]
    if choice == "cuda" and not cuda_usable():
        raise StemtokError("--device cuda: no working CUDA here")
    return [choice]


def test_song(seconds: float, rate: int = RATE) -> np.ndarray:
    """Stereo ``[2, N]``: the demo song looped, or seeded tones and noise."""
    n = int(seconds * rate)
    demo = Path(__file__).resolve().parents[2] / "resources" / "demo" / "demo.flac"
    if demo.is_file():
        from engine.audio import read_audio, resample

        a, r = read_audio(demo)
        a = resample(a, r, rate)
        out = np.empty((a.shape[0], n), np.float32)  # filled in place: no second copy
        for s in range(0, n, a.shape[1]):
            out[:, s : s + a.shape[1]] = a[:, : n - s]
        return out
    rng = np.random.default_rng(0)
    t = np.arange(n) / rate
    tone = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)
    return np.stack([tone, np.roll(tone, 7)]).astype(np.float32)


def write_test_song(path: Path, seconds: float, rate: int = RATE) -> None:
    """:func:`test_song` written block by block (never whole in memory), float32 WAV."""
    from pedalboard.io import AudioFile

    loop = test_song(min(seconds, 30.0), rate)
    n, done = int(seconds * rate), 0
    with AudioFile(str(path), "w", rate, loop.shape[0], bit_depth=32) as f:
        while done < n:
            piece = loop[:, : n - done]
            f.write(piece)
            done += piece.shape[1]


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this process: load, separate (file to files, streamed, as
    ``stemtok separate`` does; or in memory with ``--in-memory``), decode-step timing."""
    import tempfile

    from engine.constants import STEMS
    from engine.outputs import plan_output
    from engine.runtime.factory import open_separator
    from engine.runtime.sources import FileSource

    with tempfile.TemporaryDirectory(prefix="stemtok-bench-") as tmp:
        song = Path(tmp) / "song.wav"
        write_test_song(song, args.seconds)
        t0 = time.perf_counter()
        sep = open_separator(args.model, device=args.device, threads=args.threads)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        if args.in_memory:
            from engine.audio import read_audio

            sep.separate(*read_audio(song), mode=args.mode)
        else:
            from engine.stem_writer import StemWriter

            source = FileSource(song)
            paths = {s: Path(tmp) / f"{s}.wav" for s in STEMS}
            with StemWriter(paths, plan_output("wav", source.channels, source.rate)) as files:
                for block in sep.stream(source, mode=args.mode):
                    files.write(block)
                files.commit(overwrite=True)
        elapsed = time.perf_counter() - t0
    return {
        **_decode_speed(sep),
        "model": str(sep.folder),
        "mode": args.mode,
        "path": "in-memory" if args.in_memory else "file-to-files",
        "seconds": args.seconds,
        "separate_s": round(elapsed, 2),
        "rtf": round(elapsed / args.seconds, 4),
        "load_s": round(load, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _decode_speed(sep: Any) -> dict[str, Any]:
    """LM decode steps per second at the separator's batch size (one window's worth); none for
    the teacher, which decodes no tokens."""
    from engine.runtime.decode import Decoder

    if getattr(sep, "kind", "lm") == "teacher":
        return {
            "kv": "-",
            "device": sep.model.device,
            "batch": sep.batch,
            "decode_steps_per_s": 0.0,
            "window_steps_per_s": 0.0,
        }

    m, b = sep.model, sep.batch
    s = m.sizes
    dec = Decoder(m, b)
    dec.prefill(
        np.zeros((b, s.prefix_len, s.dim), np.float32),
        np.zeros((b, s.layout.n_frames + 1, s.dim), np.float32),
    )
    ids = np.zeros((b, 1, s.layout.n_levels), np.int64)
    n_steps = s.layout.n_tracks * s.layout.track_codes - 1
    t0 = time.perf_counter()
    for _ in range(n_steps):
        dec.step(ids)
    steps = n_steps / (time.perf_counter() - t0)
    return {
        "kv": s.kv_mode,
        "device": m.device,
        "batch": b,
        "decode_steps_per_s": round(steps, 1),
        "window_steps_per_s": round(steps * b, 1),
    }


def peer_child(args: argparse.Namespace) -> dict[str, Any]:
    """HTDemucs with random weights on the same test song (torch, CPU)."""
    import os

    try:
        import torch
        from demucs.apply import apply_model
        from demucs.htdemucs import HTDemucs
    except ModuleNotFoundError as exc:
        raise StemtokError(
            f"--peer needs torch and demucs ({install_hint('train')} demucs)"
        ) from exc
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    audio = torch.from_numpy(test_song(args.seconds))
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], samplerate=RATE).eval()
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        apply_model(model, audio[None], split=True, overlap=0.25, device="cpu", progress=False)
    elapsed = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": f"htdemucs-random ({params / 1e6:.1f} M)",
        "kv": "-",
        "device": "cpu",
        "mode": "peer",
        "seconds": args.seconds,
        "separate_s": round(elapsed, 2),
        "rtf": round(elapsed / args.seconds, 4),
        "load_s": round(load, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "batch": 1,
        "decode_steps_per_s": 0.0,
        "window_steps_per_s": 0.0,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _spawn(
    seconds: float, device: str, model: Path | None, args: argparse.Namespace, peer: bool = False
) -> Any:
    cmd = [
        sys.executable,
        "-m",
        "app.commands.bench",
        "--child",
        "--seconds",
        str(seconds),
        "--device",
        device,
        "--mode",
        args.mode,
    ]
    if peer:
        cmd.append("--peer")
    if args.in_memory:
        cmd.append("--in-memory")
    if model is not None:
        cmd += ["--model", str(model)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StemtokError(f"bench child failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    try:
        lengths = [float(s) for s in args.seconds.split(",") if s.strip()]
    except ValueError:
        raise StemtokError(f"--seconds: not a list of numbers: {args.seconds!r}") from None
    if not lengths or min(lengths) <= 0:
        raise StemtokError("--seconds needs positive lengths")
    rows = []
    print(
        f"{'model':<28}{'kv':<9}{'device':<7}{'seconds':>8}{'RTF':>8}{'peak MB':>9}"
        f"{'load s':>8}{'steps/s':>9}"
    )
    for model in args.model or [None]:
        for device in _devices(args.device):
            for seconds in lengths:
                r = _spawn(seconds, device, model, args)
                rows.append(r)
                print(
                    f"{Path(r['model']).name[:27]:<28}{r['kv']:<9}{r['device']:<7}"
                    f"{r['seconds']:>8.0f}{r['rtf']:>8.3f}{r['peak_rss_mb']:>9.0f}"
                    f"{r['load_s']:>8.2f}{r['decode_steps_per_s']:>9.1f}",
                    flush=True,
                )
    if args.peer:
        for seconds in lengths:
            r = _spawn(seconds, "cpu", None, args, peer=True)
            rows.append(r)
            print(
                f"{r['model'][:27]:<28}{'-':<9}{'cpu':<7}{r['seconds']:>8.0f}{r['rtf']:>8.3f}"
                f"{r['peak_rss_mb']:>9.0f}{r['load_s']:>8.2f}{'-':>9}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mode", default="aligned")
    p.add_argument("--model", type=Path)
    p.add_argument("--threads", type=int)
    p.add_argument("--peer", action="store_true")
    p.add_argument("--in-memory", action="store_true")
    args = p.parse_args(argv)
    print(json.dumps(peer_child(args) if args.peer else child(args)))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))

"""Latency benchmark of the DAW bridge (a benchmark to read, not a timed test).

::

    .venv/bin/python scripts/bridge_bench.py                  # 8-s region, default model, in-process server
    .venv/bin/python scripts/bridge_bench.py --connect        # against a running 'stemtok bridge'
    .venv/bin/python scripts/bridge_bench.py --load --clients 16 --regions 3   # transport only

Round trip = from the first byte of ``separate`` to the ``done`` frame, as a DAW script sees it.
The server's own separation time (``done.seconds``) is reported beside it, so the difference is
what framing, loopback and the queue add. The machine's load average is printed before and after:
on a shared machine other processes take CPU from the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.bridge.client import BridgeClient  # noqa: E402


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def demo_region(seconds: float, rate: int | None) -> tuple[np.ndarray, int]:
    from engine.audio import read_audio, resample

    mix, sr = read_audio(ROOT / "resources" / "demo" / "demo.flac")
    a = np.ascontiguousarray(mix[:, 10 * sr : 10 * sr + int(seconds * sr)])
    if rate and rate != sr:
        a, sr = resample(a, sr, rate).astype(np.float32), rate
    return a, sr


def pct(xs: list[float]) -> dict[str, float]:
    v = np.array(xs)
    return {
        "p50": float(np.percentile(v, 50)),
        "p95": float(np.percentile(v, 95)),
        "max": float(v.max()),
        "min": float(v.min()),
        "n": len(xs),
    }


def fmt(d: dict[str, float]) -> str:
    return f"p50 {d['p50']:.3f} s, p95 {d['p95']:.3f} s, min {d['min']:.3f} s, max {d['max']:.3f} s (n={d['n']})"


def round_trips(client: BridgeClient, a: np.ndarray, rate: int, rounds: int) -> dict[str, Any]:
    """Timed round trips; ``cpu`` is this process's CPU seconds per round (client, server and
    engine threads together: meaningful when the server runs in-process). On a shared machine
    ``cpu / cores`` estimates the wall time the round would take with the cores to itself."""
    pcm = np.ascontiguousarray(a.T, "<f4").tobytes()
    client.separate_pcm(pcm, rate, a.shape[0])  # warm-up (first ORT runs allocate)
    rtt, sep, cpu = [], [], []
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        res = client.separate_pcm(pcm, rate, a.shape[0])
        rtt.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        sep.append(res.seconds)
        print(
            f"  round trip {rtt[-1]:.3f} s (separation {res.seconds:.3f} s, "
            f"CPU {cpu[-1]:.2f} s, load {load_avg()})",
            flush=True,
        )
    return {
        "round_trip": pct(rtt),
        "separation": pct(sep),
        "cpu": pct(cpu),
        "overhead": pct([r - s for r, s in zip(rtt, sep, strict=True)]),
    }


def start_server(engine: Any, tmp: Path) -> Any:
    import secrets

    from app.bridge.server import BridgeConfig, BridgeServer

    token = secrets.token_urlsafe(32)  # a throw-away token: the user's token file is not touched
    srv = BridgeServer(engine, BridgeConfig(port=0, socket_path=tmp / "b.sock", token=token))
    srv.start()
    return srv


def model_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    a, rate = demo_region(args.seconds, args.rate)
    print(f"{args.seconds:g}-s region, {a.shape[0]} ch, {rate} Hz; load avg {load_avg()}")
    if args.connect:
        with BridgeClient() as c:
            return round_trips(c, a, rate, args.rounds)
    from engine.runtime.lm_separator import LMSeparator

    t0 = time.perf_counter()
    srv = start_server(LMSeparator(threads=args.threads), tmp)
    print(f"model loaded and server up in {time.perf_counter() - t0:.2f} s")
    try:
        with BridgeClient(srv.socket_path, token=srv.token) as c:
            return round_trips(c, a, rate, args.rounds)
    finally:
        srv.stop()


def load_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from app.bridge.testing import FractionEngine

    srv = start_server(FractionEngine(delay=args.engine_delay, steps=5), tmp)
    lat: list[float] = []
    lock = threading.Lock()

    def one(cid: int) -> None:
        rng = np.random.default_rng(cid)
        with BridgeClient(port=srv.port, token=srv.token) as c:
            sent = {}
            for _ in range(args.regions):
                a = (0.3 * rng.standard_normal((2, int(args.seconds * 44100)))).astype("<f4")
                sent[c.submit(a.T.tobytes(), 44100, 2)] = time.perf_counter()
            for rid, t in sent.items():
                c.wait(rid)
                with lock:
                    lat.append(time.perf_counter() - t)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    srv.stop()
    print(
        f"{args.clients} clients x {args.regions} regions of {args.seconds:g} s stereo: "
        f"wall {wall:.2f} s"
    )
    return {"latency": pct(lat), "wall": wall}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=8.0, help="region length (8)")
    p.add_argument("--rate", type=int, help="resample the region to this rate first")
    p.add_argument("--rounds", type=int, default=5, help="timed round trips after a warm-up")
    p.add_argument("--threads", type=int, help="engine threads (default: all cores)")
    p.add_argument("--connect", action="store_true", help="use the running bridge")
    p.add_argument("--load", action="store_true", help="many clients, stand-in engine")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--regions", type=int, default=3)
    p.add_argument("--engine-delay", type=float, default=0.005, help="stand-in engine seconds/job")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    print(f"cores {os.cpu_count()}, load avg before {load_avg()}")
    with tempfile.TemporaryDirectory(prefix="stb") as tmp:
        result = (load_bench if args.load else model_bench)(args, Path(tmp))
    result["load_avg_after"] = load_avg()
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}: {fmt(value)}")
    print(f"load avg after {result['load_avg_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load on loopback: 16 clients x 3 regions at once against the stand-in engine.

Every stem of every region must come back exactly once, bit-exact, and the whole run must end
in bounded time. Latency percentiles are printed (``pytest -s``) and checked loosely.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.bridge import paths
from app.bridge.client import BridgeClient
from app.bridge.connection import Timeouts
from app.bridge.server import BridgeConfig, BridgeServer
from app.bridge.testing import FractionEngine, expected

CLIENTS, REGIONS = 16, 3
STEMS = ("vocals", "drums", "bass", "other")


def make_region(client: int, k: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(1000 * client + k)
    rate = int(rng.choice([8000, 22050, 44100, 48000]))
    channels = int(rng.integers(1, 3))
    frames = int(rng.uniform(0.2, 2.0) * rate)
    return (0.5 * rng.standard_normal((channels, frames))).astype(np.float32), rate


def run_client(srv: BridgeServer, cid: int, out: dict[str, Any], errors: list[str]) -> None:
    """Pipeline REGIONS regions, then read raw frames and count every stem."""
    try:
        with BridgeClient(
            srv.socket_path if cid % 2 else None, None if cid % 2 else srv.port, timeout=60.0
        ) as c:
            regions, sent = {}, {}
            for k in range(REGIONS):
                a, rate = make_region(cid, k)
                rid = c.submit(np.ascontiguousarray(a.T, "<f4").tobytes(), rate, a.shape[0])
                regions[rid], sent[rid] = a, time.perf_counter()
            counts: Counter[tuple[str, str]] = Counter()
            latency: dict[str, float] = {}
            while len(latency) < REGIONS:
                h, payload = c.recv()
                rid = h.get("id")
                if h["type"] == "stem":
                    counts[(rid, h["name"])] += 1
                    a = regions[rid]
                    got = np.frombuffer(payload, "<f4").reshape(-1, a.shape[0]).T
                    if not np.array_equal(got, expected(a, h["name"])):
                        errors.append(f"client {cid} {rid} {h['name']}: wrong samples")
                elif h["type"] == "done":
                    latency[rid] = time.perf_counter() - sent[rid]
                elif h["type"] != "progress":
                    errors.append(f"client {cid}: unexpected {h}")
                    return
            out[cid] = (counts, latency, set(regions))
    except Exception as exc:
        errors.append(f"client {cid}: {type(exc).__name__}: {exc}")


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "run").mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    config = BridgeConfig(port=0, socket_path=paths.default_socket_path(), timeouts=Timeouts())
    srv = BridgeServer(FractionEngine(delay=0.005, steps=5), config)
    srv.start()
    yield srv
    srv.stop()


def test_sixteen_clients_three_regions_each(server: BridgeServer) -> None:
    out: dict[int, Any] = {}
    errors: list[str] = []
    threads = [
        threading.Thread(target=run_client, args=(server, i, out, errors)) for i in range(CLIENTS)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - t0
    assert not errors, errors[:5]
    assert sorted(out) == list(range(CLIENTS))
    for counts, _, rids in out.values():
        assert counts == Counter({(rid, s): 1 for rid in rids for s in STEMS})  # exactly once
    assert len(server.engine.calls) == CLIENTS * REGIONS  # type: ignore[attr-defined]
    lat = np.array([v for _, latency, _ in out.values() for v in latency.values()])
    p50, p95, worst = np.percentile(lat, 50), np.percentile(lat, 95), lat.max()
    print(
        f"\nload {CLIENTS}x{REGIONS}: wall {wall:.2f} s, latency p50 {1000 * p50:.0f} ms, "
        f"p95 {1000 * p95:.0f} ms, max {1000 * worst:.0f} ms"
    )
    assert wall < 30.0 and worst < 30.0
    with BridgeClient(port=server.port) as c:
        st = c.status()
    assert st["done"] == CLIENTS * REGIONS and st["queued"] == 0 and st["clients"] == 1

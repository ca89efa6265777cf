"""``stemtok bridge``: serve separation to DAWs on 127.0.0.1 and a user-only Unix socket."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path
from typing import Any

from engine.errors import StemtokError

EXAMPLES = """\
Examples:
  stemtok bridge                       TCP 127.0.0.1:47321 and $XDG_RUNTIME_DIR/stemtok/bridge.sock
  stemtok bridge --port 0 --no-socket  a free TCP port only (clients find it in bridge.json)
  stemtok bridge --status              is it up, what is queued, which version
  stemtok send region.wav --out stems  separate a region through the running bridge

Clients authenticate with the token in $XDG_CONFIG_HOME/stemtok/bridge-token (made on first
start, mode 0600). The protocol is in docs/bridge-protocol.md.
"""
log = logging.getLogger("stemtok.bridge")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "bridge",
        help="serve separation to DAWs on a local socket",
        description="Load the model once and separate the regions that DAW scripts send, one "
        "at a time in fair order across clients, with progress, cancel and a request log. "
        "SIGINT/SIGTERM stop it: queued jobs are refused, the running one gets --grace seconds.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_listener_args(p)
    p.add_argument("--status", action="store_true", help="report on the running bridge and exit")
    p.add_argument(
        "--model",
        help="default (the shipped generative model), teacher (the shipped discriminative "
        "teacher: fast, aligned only) or a model folder made by 'stemtok export'",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.set_defaults(func=run)


def add_listener_args(p: Any) -> None:
    """Where and how the bridge listens (a parser or an argument group): ``stemtok bridge`` and
    ``stemtok editor --bridge`` take the same options."""
    from app.bridge.paths import DEFAULT_PORT

    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument("--no-tcp", action="store_true", help="no TCP listener")
    p.add_argument("--socket", type=Path, metavar="PATH", help="Unix socket path")
    p.add_argument("--no-socket", action="store_true", help="no Unix socket")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="close connections with nothing to do after S seconds (300)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        metavar="M",
        help="longest region accepted, in minutes at 48 kHz (10)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="S",
        help="on stopping (SIGINT/SIGTERM, or the editor closing), let the running job "
        "finish for S seconds (5)",
    )


def socket_arg(args: argparse.Namespace) -> Path | None:
    from app.bridge.paths import default_socket_path

    if args.no_socket or not hasattr(socket, "AF_UNIX"):
        return None
    return args.socket or default_socket_path()


def run(args: argparse.Namespace) -> int:
    if args.status:
        return show_status(args)
    server = make_server(args)
    from app.bridge.paths import token_path

    def ready() -> None:
        print(
            f"stemtok bridge: listening on {server.where()}; clients authenticate with the "
            f"token in {token_path()} (Ctrl-C stops)",
            flush=True,
        )

    server.serve_forever(grace=args.grace, ready=ready)
    return 0


def bridge_config(args: argparse.Namespace) -> Any:
    """The :class:`~app.bridge.server.BridgeConfig` of the listener options (``stemtok bridge``
    and ``stemtok editor --bridge`` share them): port, socket, state file, limits, timeouts."""
    import dataclasses

    from app.bridge.connection import Timeouts
    from app.bridge.paths import state_path
    from app.bridge.protocol import Limits
    from app.bridge.server import BridgeConfig

    if not 0 <= args.port <= 65535:
        raise StemtokError(f"--port {args.port}: use 0-65535")
    if args.max_minutes <= 0:
        raise StemtokError("--max-minutes must be positive")
    frames = int(args.max_minutes * 60 * 48_000)
    stereo = frames * 2 * 4  # the longest region in stereo; more channels must be shorter
    limits = Limits(max_frames=frames, max_payload=max(Limits().max_payload, stereo))
    config = BridgeConfig(
        port=args.port,
        tcp=not args.no_tcp,
        socket_path=socket_arg(args),
        state_file=state_path(),
        limits=limits,
        timeouts=dataclasses.replace(Timeouts(), idle=args.idle_timeout),
    )
    if not config.tcp and config.socket_path is None:
        raise StemtokError("--no-tcp and --no-socket leave nothing to listen on")
    return config


def make_server(args: argparse.Namespace) -> Any:
    from app.bridge.server import BridgeServer
    from engine.runtime.factory import open_separator

    config = bridge_config(args)
    log.info("loading the model")
    engine = open_separator(args.model, device=args.device, threads=args.threads)
    return BridgeServer(engine, config)


def show_status(args: argparse.Namespace) -> int:
    from app.bridge.auth import TokenError
    from app.bridge.client import BridgeClient, BridgeError
    from app.bridge.paths import DEFAULT_PORT

    port = None if args.port == DEFAULT_PORT and not args.no_socket else args.port
    sock = args.socket
    try:
        with BridgeClient(sock, None if sock else port, timeout=5.0) as client:
            rtt, st = client.ping(), client.status()
    except (BridgeError, TokenError) as exc:
        print(f"stemtok bridge: not running ({exc})")
        return 1
    where = " and ".join(
        x
        for x in (f"127.0.0.1:{st['port']}" if st.get("port") else "", st.get("socket") or "")
        if x
    )
    print(
        f"stemtok bridge: up, {st['server']}, protocol v{st['version']}, pid {st['pid']}, "
        f"on {where}"
    )
    print(
        f"  {st['running']} running, {st['queued']} queued, {st['done']} done, "
        f"{st['clients'] - 1} other clients, up {st['uptime']:.0f} s, ping {1000 * rtt:.1f} ms"
    )
    return 0

"""The DAW bridge: a local socket service that separates audio regions sent by DAW scripts.

Protocol v1 is specified in ``docs/bridge-protocol.md``. Modules:

- :mod:`app.bridge.protocol` framing, limits and request validation (standard library only)
- :mod:`app.bridge.paths` / :mod:`app.bridge.auth` where the socket and token live; the token
- :mod:`app.bridge.client` a blocking client for DAW scripts (standard library only; numpy
  arrays are accepted and returned when numpy is installed)
- :mod:`app.bridge.server` :class:`~app.bridge.server.BridgeServer`, the asyncio service, which a
  GUI can run in a background thread (``start()`` / ``stop()``)

The client side never imports numpy, onnxruntime or the engine, so a DAW's embedded Python can
use it with the standard library alone.
"""

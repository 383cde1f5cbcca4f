"""Running the service: bind, announce, serve with uvicorn until SIGTERM/SIGINT.

The socket is bound before uvicorn starts, so that ``--port 0`` announces the real port: once bound, exactly one
line goes to stderr, ``skyscan serve: listening on http://HOST:PORT``. uvicorn handles SIGTERM and SIGINT: it
stops accepting, gives open requests (and event streams) ``SHUTDOWN_GRACE_SECONDS`` to finish, then the
application's shutdown stops the scheduler thread after its current pass. Detached local scans keep running and
are adopted by the next start (:mod:`skyscan.service.worker`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
from types import FrameType

from skyscan.errors import InputError
from skyscan.service.config import ServeConfig

__all__ = ["SHUTDOWN_GRACE_SECONDS", "bind_socket", "serve"]

SHUTDOWN_GRACE_SECONDS = 2


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); InputError if it cannot be bound."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections (Linux)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def serve(cfg: ServeConfig, host: str | None = None, port: int | None = None) -> None:
    """Serve the API and run the scheduler until SIGTERM/SIGINT (see the module docstring)."""
    import uvicorn

    from skyscan.service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from skyscan.service.worker import acquire_service_lock

    os.close(acquire_service_lock(cfg))  # a second service on this data directory: one line, before listening
    bind_host = host or cfg.host
    sock = bind_socket(bind_host, cfg.port if port is None else port)
    real_port = sock.getsockname()[1]
    app = create_app(cfg)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS, proxy_headers=True)
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM/SIGINT itself and, once stopped, raises the captured signal again with the handler
    # that was installed before it: this one, so that a requested stop ends the command normally (exit 0). A
    # signal that comes before uvicorn has taken over (right after the listening line) asks it to stop at once.
    def stopped(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    print(f"skyscan serve: listening on http://{shown}:{real_port}", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

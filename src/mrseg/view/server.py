"""Serving a viewer: bind a socket (``127.0.0.1`` by default; port 0 picks a free one), run uvicorn, stop cleanly.

:class:`ViewServer` binds first, so the URL (with the port actually bound) is known before serving
starts; :meth:`ViewServer.serve` then blocks until Ctrl-C (SIGINT) or SIGTERM, which uvicorn turns
into a graceful shutdown, or until :meth:`ViewServer.stop` (from another thread). The catalog's
handles are closed when it returns.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from mrseg.core.errors import ConfigError
from mrseg.view.app import create_app
from mrseg.view.assets import Assets, load_assets
from mrseg.view.catalog import Catalog
from mrseg.view.service import Viewer
from mrseg.view.settings import DEFAULT_CACHE_MB, DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free port chosen by the system).

    Raises
    ------
    ConfigError
        The address cannot be bound (in use, not local, bad host).
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it every response
        # (headers and body written apart) waits ~40 ms for the client's delayed ACK (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except (OSError, IndexError) as error:
        raise ConfigError(f"--host {host}: {error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = error.strerror or error
        raise ConfigError(f"cannot listen on {host}:{port}: {reason} (--port 0 picks a free port)") from None
    return sock


class ViewServer:
    """A viewer bound to an address (see the module docstring).

    Parameters
    ----------
    catalog
        What to serve (closed when :meth:`serve` returns).
    host, port
        Address to listen on (``port`` 0: any free port).
    cache_mb
        Tile-cache budget in MiB.
    assets
        Front-end files (default: the installed ones, :func:`mrseg.view.assets.load_assets`).
    """

    def __init__(
        self,
        catalog: Catalog,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        cache_mb: float = DEFAULT_CACHE_MB,
        assets: Assets | None = None,
    ) -> None:
        self.viewer = Viewer(catalog, int(cache_mb * (1 << 20)))
        app = create_app(self.viewer, assets if assets is not None else load_assets())
        if host not in LOCAL_HOSTS:
            log.warning("listening on %s: the viewer is reachable from other machines (no authentication)", host)
        self.socket = bind(host, port)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self.started = threading.Event()

    @property
    def url(self) -> str:
        """``http://host:port/`` of the bound socket."""
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def serve(self) -> None:
        """Serve until Ctrl-C, SIGTERM or :meth:`stop`; then close every handle."""
        try:
            self.started.set()
            self._server.run(sockets=[self.socket])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: that is the normal end
            pass
        finally:
            self.socket.close()
            self.viewer.close()
            log.info("viewer stopped")

    def stop(self) -> None:
        """Ask a serving server to finish (thread-safe)."""
        self._server.should_exit = True

    def serve_in_thread(self) -> threading.Thread:
        """Start :meth:`serve` in a daemon thread (tests, benchmarks) and return it once it accepts connections."""
        thread = threading.Thread(target=self.serve, name="mrseg-view", daemon=True)
        thread.start()
        self.started.wait()
        while not self._server.started and thread.is_alive():
            threading.Event().wait(0.01)
        return thread


__all__ = ["ViewServer", "bind"]

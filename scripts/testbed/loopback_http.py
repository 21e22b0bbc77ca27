"""A threaded HTTP(S) server on 127.0.0.1 (free port) served from a background thread.

The test bed's small HTTP servers (the counting proxy, the Metronome test server) share this:
bind, optional TLS, the URL, start and stop. Their request handlers derive from
:class:`QuietHandler`. :func:`free_port` is the bed's one way to pick a port for a service.
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, and no access log on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackHttpServer:
    """Serve ``handler`` on 127.0.0.1 at a free port.

    :param handler: the request handler class.
    :param name: the serving thread's name.
    :param tls: serve HTTPS with this server context.
    :param poll_interval: how often the serving loop checks for shutdown, in seconds.
    """

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        *,
        name: str,
        tls: ssl.SSLContext | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        #: The base URL, e.g. ``http://127.0.0.1:41234``.
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": poll_interval}, name=name, daemon=True
        )

    def start(self) -> None:
        """Serve in the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

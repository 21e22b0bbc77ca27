"""An HTTP server on 127.0.0.1 that gives every request the same canned answer, and counts them.

Stands in for what can answer on a NameNode's port when it is not a plain WebHDFS: a Kerberized
NameNode refusing a client without a ticket (``401`` with ``WWW-Authenticate: Negotiate``, as
Hadoop's SPNEGO filter answers), or some web page on a wrongly configured port (``200``
``text/html``).
"""

from __future__ import annotations

import threading
from types import TracebackType

from scripts.testbed.loopback_http import LoopbackHttpServer, QuietHandler

#: Hadoop's answer to a request without SPNEGO credentials on a Kerberized NameNode.
NEGOTIATE_401 = (
    401,
    {"WWW-Authenticate": "Negotiate", "Content-Type": "text/html;charset=iso-8859-1"},
    b"<html><head><title>Error 401 Authentication required</title></head>"
    b"<body><h2>HTTP ERROR 401</h2><p>Problem accessing /webhdfs/v1/. Reason:"
    b"<pre>    Authentication required</pre></p></body></html>\n",
)
#: Some web page (a dashboard, a proxy's landing page) where WebHDFS was expected.
HTML_200 = (
    200,
    {"Content-Type": "text/html; charset=utf-8"},
    b"<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>It works!</body></html>\n",
)


class CannedHttpServer:
    """Answer every request with ``status``, ``headers`` and ``body``; record ``(method, path)``.

    :param answer: ``(status, headers, body)``, e.g. :data:`NEGOTIATE_401`.
    """

    def __init__(self, answer: tuple[int, dict[str, str], bytes]) -> None:
        status, headers, body = answer
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with server._lock:
                    server.requests.append((self.command, self.path))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

        self._http = LoopbackHttpServer(Handler, name="canned-http")
        self.url = self._http.url

    def __enter__(self) -> CannedHttpServer:
        self._http.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.stop()

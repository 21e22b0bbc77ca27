"""A tiny HTTP reverse proxy on 127.0.0.1 that forwards to one upstream and counts requests.

Used to count the WebHDFS requests a sensor makes per poke, on a real NameNode: point the
connection at the proxy instead of the NameNode. Each request is recorded as
``(method, op, path)``, where ``op`` is the WebHDFS ``op=`` query parameter.
Redirects (e.g. to a DataNode) are passed through untouched, not followed.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections import Counter
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from scripts.testbed.loopback_http import LoopbackHttpServer, QuietHandler

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


class CountingProxy:
    """Forward every request to ``upstream`` (``http://host:port``) and record it.

    :param upstream: base URL of the server to forward to.
    :param tls: serve HTTPS with this server context (e.g. a self-signed certificate), to put TLS
        in front of a plain-HTTP upstream.
    """

    def __init__(self, upstream: str, *, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def _forward(self) -> None:
                split = urlsplit(self.path)
                op = (parse_qs(split.query).get("op") or [""])[0].upper()
                with proxy._lock:
                    proxy.requests.append((self.command, op, split.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _forward

        self._http = LoopbackHttpServer(Handler, name="counting-proxy", tls=tls)
        self.url = self._http.url

    def start(self) -> CountingProxy:
        """Start serving in a background thread."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._http.stop()

    def reset(self) -> None:
        """Forget the requests recorded so far."""
        with self._lock:
            self.requests.clear()

    def counts(self) -> Counter[str]:
        """Number of requests per WebHDFS operation."""
        with self._lock:
            return Counter(op for _, op, _ in self.requests)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

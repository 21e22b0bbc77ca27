"""Shared by the serving tests: real HTTP upstreams on 127.0.0.1 that answer their own name."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Named(ThreadingHTTPServer):
    """An HTTP/1.1 keep-alive upstream answering its own name; ``/slow`` waits 0.5 s first.

    :param name: what it answers.
    :param missing: paths it answers 404 to (a model server without ``/ping``, say).
    """

    daemon_threads = True

    def __init__(self, name: str, missing: tuple[str, ...] = ()) -> None:
        self.name = name

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/slow":
                    time.sleep(0.5)
                body = name.encode()
                self.send_response(404 if self.path in missing else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                # Read the body: an unread body would be taken for the start of the next request.
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def get(port: int, path: str = "/") -> str:
    """``GET path`` on 127.0.0.1:port on a new connection; the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


@pytest.fixture
def blue_green() -> Iterator[tuple[Named, Named]]:
    a, b = Named("blue"), Named("green")
    yield a, b
    a.close()
    b.close()

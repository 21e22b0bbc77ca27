"""Reaching a Docker engine over tcp://: TLS unless the connection says ``tls: false``, and one clear
line naming the engine when nothing answers (issue 9 item 11). Loopback listeners only; no dockerd needed."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_ml_provider.exceptions import BackendError
from scripts.testbed.loopback_http import free_port

pytestmark = pytest.mark.integration


def engine_conn(host: str, port: int | None = None, **extra: Any) -> Any:
    from airflow.sdk import Connection

    return Connection(
        conn_id="engine", conn_type="ml_docker", host=host, port=port, extra=json.dumps(extra) if extra else None
    )


@contextlib.contextmanager
def plain_http_listener() -> Iterator[tuple[int, list[bytes]]]:
    """A plain-HTTP listener on loopback recording the first bytes of each connection (answers 400)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                peer, _ = server.accept()
            except TimeoutError:
                continue
            with peer:
                peer.settimeout(5)
                received.append(peer.recv(4096))
                peer.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1]), received
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_an_unreachable_engine_is_one_line_naming_it() -> None:
    from airflow_ml_provider.hooks.container import backend_from_connection

    port = free_port()
    backend = backend_from_connection(engine_conn(f"tcp://127.0.0.1:{port}", timeout=5))
    started = time.monotonic()
    with pytest.raises(BackendError) as e:
        backend.find("ml-connection-test-0000000000")
    assert time.monotonic() - started < 10
    text = str(e.value)
    assert "\n" not in text, text
    assert len(text) < 400, text
    assert f"Could not reach the Docker engine at https://127.0.0.1:{port}" in text
    assert "ConnectionRefused" in text or "Connection refused" in text
    assert e.value.__cause__ is None
    assert e.value.__suppress_context__


def test_a_tcp_engine_is_spoken_to_over_tls_unless_the_connection_says_tls_false() -> None:
    from airflow_ml_provider.hooks.container import backend_from_connection

    with plain_http_listener() as (port, received):
        default = backend_from_connection(engine_conn(f"tcp://127.0.0.1:{port}", timeout=5))
        with pytest.raises(BackendError, match=r"answers plain HTTP, not TLS.*tls=false") as e:
            default.find("ml-connection-test-0000000000")
        assert received, "the client never connected"
        assert received[0][:1] == b"\x16", received  # a TLS ClientHello, nothing in clear text
        assert "\n" not in str(e.value)
        received.clear()
        plain = backend_from_connection(engine_conn("127.0.0.1", port, tls=False, timeout=5))
        with pytest.raises(BackendError, match=rf"at http://127\.0\.0\.1:{port}"):
            plain.find("ml-connection-test-0000000000")
        assert received, "the client never connected"
        assert received[0].startswith(b"GET /"), received

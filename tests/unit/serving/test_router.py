"""The serving router with real sockets on 127.0.0.1: forwarding, switching, draining, migration."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_ml_provider.serving.router import Router
from airflow_ml_provider.serving.router_client import local_http
from tests.unit.serving.conftest import Named, get


def local_http_on(r: Router, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One request to ``r``'s control API, through the deploy operator's own client function."""
    return local_http(method, r.admin_port, path, body, token=token)


class Echo:
    """A raw TCP upstream: echoes ``<name>:<bytes>`` per chunk; on EOF sends ``<name>:bye`` and closes."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(self.name + b":" + data)
            conn.sendall(self.name + b":bye")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def router(blue_green: tuple[Named, Named]) -> Iterator[Router]:
    with Router(0, blue_green[0].port, 0) as r:
        yield r


def wait_for_connections(r: Router, want: dict[str, int], timeout: float = 5.0) -> dict[str, int]:
    """The router's open connections per upstream, once they equal ``want`` (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while (now := r.state()["connections"]) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return dict(now)


def test_forwards_to_the_upstream_and_switches_new_connections(router: Router, blue_green: tuple[Named, Named]) -> None:
    blue, green = blue_green
    assert [get(router.listen_port) for _ in range(3)] == ["blue"] * 3
    status, body = local_http_on(router, "PUT", "/upstream", {"port": green.port})
    assert (status, body) == (200, {"upstream": green.port, "previous": blue.port})
    assert [get(router.listen_port) for _ in range(3)] == ["green"] * 3
    assert local_http_on(router, "GET", "/state")[1]["upstream"] == green.port


def test_an_in_flight_request_finishes_on_its_old_upstream(router: Router, blue_green: tuple[Named, Named]) -> None:
    _blue, green = blue_green
    answers: list[str] = []
    slow = threading.Thread(target=lambda: answers.append(get(router.listen_port, "/slow")))
    slow.start()
    time.sleep(0.15)  # the slow request is now being served by blue
    router.switch(green.port)
    assert get(router.listen_port) == "green"  # a new connection meanwhile
    slow.join()
    assert answers == ["blue"]


def test_a_raw_tcp_stream_stays_on_its_upstream_across_a_switch() -> None:
    """Non-HTTP bytes are never migrated: the connection keeps talking to the upstream it opened to."""
    old, new = Echo("old"), Echo("new")
    try:
        with Router(0, old.port, -1) as r:
            s = socket.create_connection(("127.0.0.1", r.listen_port), timeout=5)
            s.sendall(b"one")
            assert s.recv(100) == b"old:one"
            r.switch(new.port)
            s.sendall(b"two")
            assert s.recv(100) == b"old:two"
            assert r.state()["connections"] == {str(old.port): 1}
            s2 = socket.create_connection(("127.0.0.1", r.listen_port), timeout=5)
            s2.sendall(b"three")
            assert s2.recv(100) == b"new:three"
            s.shutdown(socket.SHUT_WR)  # a half-close reaches the upstream; its last words come back
            assert s.recv(100) == b"old:bye"
            assert s.recv(100) == b""
            s.close()
            assert wait_for_connections(r, {str(new.port): 1}) == {str(new.port): 1}
            s2.close()
            assert wait_for_connections(r, {}) == {}
    finally:
        old.close()
        new.close()


def test_keep_alive_connections_move_at_the_next_request(router: Router, blue_green: tuple[Named, Named]) -> None:
    blue, green = blue_green
    conn = http.client.HTTPConnection("127.0.0.1", router.listen_port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"blue"
    sock = conn.sock
    router.switch(green.port)
    assert router.state()["connections"] == {str(blue.port): 1}  # still on blue: it drains
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"green"
    assert conn.sock is sock  # same client connection, no reconnect
    state = router.state()
    assert state["connections"] == {str(green.port): 1}
    assert state["migrated"] == 1
    conn.close()


def test_tcp_only_keeps_keep_alive_connections_on_the_old_upstream(blue_green: tuple[Named, Named]) -> None:
    blue, green = blue_green
    with Router(0, blue.port, -1, migrate=False) as r:
        conn = http.client.HTTPConnection("127.0.0.1", r.listen_port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"blue"
        r.switch(green.port)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"blue"
        conn.close()


def test_switching_to_a_port_nobody_listens_on_changes_nothing(router: Router, blue_green: tuple[Named, Named]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    status, body = local_http_on(router, "PUT", "/upstream", {"port": dead})
    assert status == 409
    assert str(dead) in body["error"]
    assert router.upstream == blue_green[0].port
    assert local_http_on(router, "PUT", "/upstream", {"port": "x"})[0] == 400
    assert get(router.listen_port) == "blue"


def test_steady_keep_alive_load_through_a_switch_has_no_errors(router: Router, blue_green: tuple[Named, Named]) -> None:
    blue, green = blue_green
    per_thread: list[list[str]] = [[] for _ in range(4)]
    errors: list[str] = []
    stop = threading.Event()

    def loop(seen: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", router.listen_port, timeout=5)
        while not stop.is_set():
            try:
                conn.request("POST", "/", body=b"{}")
                resp = conn.getresponse()
                seen.append(f"{resp.status} {resp.read().decode()}")
            except (OSError, http.client.HTTPException) as e:
                errors.append(repr(e))
                conn.close()
        conn.close()

    threads = [threading.Thread(target=loop, args=(seen,)) for seen in per_thread]
    for t in threads:
        t.start()
    time.sleep(0.3)
    router.switch(green.port)
    time.sleep(0.3)
    blue.close()  # the old upstream goes away once drained
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    for seen in per_thread:
        # Every answer is a 200; each connection sees blue, then green from the switch on, never back.
        n_blue = seen.count("200 blue")
        assert n_blue > 0
        assert seen.count("200 green") > 0
        assert seen == ["200 blue"] * n_blue + ["200 green"] * (len(seen) - n_blue)
    assert router.state()["connections"].get(str(blue.port), 0) == 0


def test_with_a_token_the_control_api_answers_only_requests_that_carry_it(blue_green: tuple[Named, Named]) -> None:
    blue, green = blue_green
    with Router(0, blue.port, 0, admin_token="t0ken-abc") as r:
        assert local_http_on(r, "GET", "/state")[0] == 401
        assert local_http_on(r, "GET", "/state", token="wrong")[0] == 401
        status, body = local_http_on(r, "PUT", "/upstream", {"port": green.port}, token="t0ken-ab")
        assert status == 401
        assert "t0ken" not in json.dumps(body)
        assert r.upstream == blue.port  # refused: nothing switched
        assert local_http_on(r, "GET", "/health") == (200, "ok")  # liveness needs no token
        assert local_http_on(r, "PUT", "/upstream", {"port": green.port}, token="t0ken-abc") == (
            200,
            {"upstream": green.port, "previous": blue.port},
        )
        assert local_http_on(r, "GET", "/state", token="t0ken-abc")[1]["upstream"] == green.port
        assert get(r.listen_port) == "green"


def test_health_follows_the_upstream_and_never_needs_the_token(blue_green: tuple[Named, Named]) -> None:
    """Without a health path a TCP connect to the current upstream decides; 503 names the port and why."""
    blue, green = blue_green
    with Router(0, blue.port, 0, admin_token="t0ken-abc") as r:
        assert local_http_on(r, "GET", "/health") == (200, "ok")
        blue.close()  # the model server died; the router itself is fine
        assert local_http_on(r, "GET", "/health") == (503, f"upstream 127.0.0.1:{blue.port} refused the connection")
        assert local_http_on(r, "GET", "/state", token="t0ken-abc")[0] == 200  # the control API still answers
        r.switch(green.port)
        assert local_http_on(r, "GET", "/health") == (200, "ok")


def test_with_a_health_path_only_a_200_there_is_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_ml_provider.serving import router as router_module

    monkeypatch.setattr(router_module, "HEALTH_TIMEOUT", 0.3)
    ok, no_ping = Named("m"), Named("m", missing=("/ping",))
    hung = socket.create_server(("127.0.0.1", 0))  # accepts connections (the kernel does), never answers
    hung_port = hung.getsockname()[1]
    try:
        with Router(0, ok.port, 0, health_path="/ping") as r:
            assert local_http_on(r, "GET", "/health") == (200, "ok")
            r.switch(no_ping.port)
            status, body = local_http_on(r, "GET", "/health")
            assert (status, body) == (503, f"upstream 127.0.0.1:{no_ping.port} answered HTTP 404 to GET /ping")
            r.switch(hung_port)
            status, body = local_http_on(r, "GET", "/health")
            assert (status, body) == (503, f"upstream 127.0.0.1:{hung_port} did not answer GET /ping within 0.3 s")
            r.switch(ok.port)
            ok.close()
            status, body = local_http_on(r, "GET", "/health")
            assert (status, body) == (503, f"upstream 127.0.0.1:{ok.port} refused the connection")
    finally:
        hung.close()
        no_ping.close()


def test_a_restarted_router_comes_back_on_the_upstream_it_was_switched_to(
    blue_green: tuple[Named, Named], tmp_path: Any
) -> None:
    """Docker restarts a crashed router with its first command line; the state file keeps the switch."""
    blue, green = blue_green
    state = tmp_path / "upstream"
    with Router(0, blue.port, -1, state_file=str(state)) as r:
        assert r.upstream == blue.port
        r.switch(green.port)
    with Router(0, blue.port, -1, state_file=str(state)) as again:  # the same arguments
        assert again.upstream == green.port
        assert get(again.listen_port) == "green"
    state.write_text("not a port")
    with Router(0, blue.port, -1, state_file=str(state)) as unreadable:
        assert unreadable.upstream == blue.port

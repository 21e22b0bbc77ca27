"""A tiny TCP router in front of a model server: a stable port whose upstream can be switched live.

``MlflowDeployModelOperator`` runs this file (standard library only, Python >= 3.9) as the
command of a *router* container per endpoint (``python3 -c <this source> --listen-port ...``), so
any image with a ``python3`` will do. It can also be run (or imported, for tests) directly::

    python3 router.py --listen-port 8080 --upstream-port 41234 --admin-port 8081 --health-path /ping

* **Data plane**: listens on ``--listen-host:--listen-port`` and connects every new client
  connection to ``--upstream-host:<current upstream port>``, then copies bytes both ways
  (half-closes are propagated, ``TCP_NODELAY`` on both legs). A connection stays on the upstream
  it was opened to while a request is in flight.
* **Request-boundary migration** (HTTP/1.1, on unless ``--tcp-only``): after a switch, a
  keep-alive connection still bound to the old upstream moves to the new one when the client
  starts its *next* request, i.e. when, after the upstream last sent data, the client sends bytes
  that begin with an HTTP method (``POST /…``). The old upstream connection is then closed by us,
  never under an in-flight request, and the client's connection stays open, so a client that
  reuses connections sees no error and no reconnect. This assumes no HTTP pipelining (no common
  client pipelines); with ``--tcp-only`` connections stay where they were opened until they close.
* **Control plane**: a small HTTP API on ``--admin-host:--admin-port`` (127.0.0.1 by default).
  When the environment variable ``ROUTER_ADMIN_TOKEN`` is set (the deploy operator sets a random
  one per router and passes it as a secret), ``/state`` and ``/upstream`` answer 401 unless the
  request carries ``Authorization: Bearer <token>``; the token is never taken from the command
  line, which every local user can read. Without it anyone who reaches the port can switch:

  ``GET /state``      ``{"upstream": port, "connections": {"<port>": open connections}, "accepted": n,
                      "migrated": n}`` (what a deployer polls to know the old upstream drained)
  ``PUT /upstream``   body ``{"port": N}``: switch new connections to port N; 409 (nothing
                      changed) if nothing accepts a connection on N
  ``GET /health``     200 ``ok`` when the *current upstream* serves, else 503 and why (``upstream
                      127.0.0.1:41234 refused the connection``); never needs the token, so a load
                      balancer or monitor can poll it. With ``--health-path PATH`` (the deploy
                      operator passes ``/ping``) that is ``GET PATH`` on the upstream answering 200,
                      else a TCP connect, within ``HEALTH_TIMEOUT`` s. (``/state`` tells whether
                      the router itself answers.)
* **Restarts**: with ``--state-file PATH`` each switch is written there, and a starting router that
  finds a port there uses it instead of ``--upstream-port``: Docker restarts a crashed container
  with its first command line but keeps its files, so the router resumes on its last upstream.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import http.client
import json
import os
import re
import selectors
import socket
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONNECT_TIMEOUT = 5.0
#: Seconds ``GET /health`` waits for the upstream: to connect, and for the answer on the health path.
HEALTH_TIMEOUT = 2.0
BUFFER = 65536
#: The environment variable holding the control API's bearer token.
TOKEN_ENV = "ROUTER_ADMIN_TOKEN"  # noqa: S105  # a variable name, not a secret
#: The start of an HTTP/1.x request line (what a client sends first when it begins a new request).
_REQUEST_START = re.compile(rb"^(?:GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH) /")


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _half_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


class Router:
    """The proxy and its admin API; :meth:`start` runs both in daemon threads.

    :param listen_port: the stable port clients call.
    :param upstream_port: where new connections go first.
    :param admin_port: the control API's port (0: any free port, -1: no control API).
    :param listen_host: the address the stable port is bound to.
    :param upstream_host: the upstreams' address.
    :param admin_host: the address the control API is bound to.
    :param migrate: move keep-alive connections to a new upstream at request boundaries.
    :param admin_token: if set, the control API (but ``/health``) requires ``Authorization: Bearer <token>``.
    :param health_path: ``/health`` sends ``GET <health_path>`` to the upstream and needs a 200;
        None: a TCP connect to the upstream decides.
    :param state_file: where each switch is written; :meth:`start` resumes on the port found there.
    """

    def __init__(
        self,
        listen_port: int,
        upstream_port: int,
        admin_port: int = 0,
        *,
        listen_host: str = "127.0.0.1",
        upstream_host: str = "127.0.0.1",
        admin_host: str = "127.0.0.1",
        migrate: bool = True,
        admin_token: str | None = None,
        health_path: str | None = None,
        state_file: str | None = None,
    ) -> None:
        self.listen_host, self.listen_port = listen_host, listen_port
        self.admin_token = admin_token or None
        self.upstream_host = upstream_host
        self.admin_host, self.admin_port = admin_host, admin_port
        self.migrate = migrate
        self.health_path = health_path or None
        self.state_file = state_file or None
        self._upstream = upstream_port
        self._lock = threading.Lock()
        self._open: dict[int, int] = {}
        self._accepted = 0
        self._migrated = 0
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._admin: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # --- state -----------------------------------------------------------------------------

    @property
    def upstream(self) -> int:
        """The port new connections go to."""
        with self._lock:
            return self._upstream

    def switch(self, port: int) -> int:
        """Send new connections (and migrating ones) to ``port``; returns the previous port.

        Raises OSError (and changes nothing) when nothing accepts a connection on ``port``.
        """
        _connect(self.upstream_host, port).close()
        with self._lock:
            previous, self._upstream = self._upstream, port
            self._remember(port)
        if previous != port:
            print(f"router: upstream {previous} -> {port}", flush=True)
        return previous

    def state(self) -> dict[str, Any]:
        """The current upstream, open connections per upstream port, and counters."""
        with self._lock:
            return {
                "upstream": self._upstream,
                "connections": {str(p): n for p, n in self._open.items() if n},
                "accepted": self._accepted,
                "migrated": self._migrated,
            }

    def health(self) -> str | None:
        """None when the current upstream serves (see ``GET /health``), else why not."""
        port, path = self.upstream, self.health_path
        where, probe = f"upstream {self.upstream_host}:{port}", f"answer GET {path}" if path else "accept a connection"
        try:
            if path is None:
                socket.create_connection((self.upstream_host, port), timeout=HEALTH_TIMEOUT).close()
                return None
            conn = http.client.HTTPConnection(self.upstream_host, port, timeout=HEALTH_TIMEOUT)
            try:
                conn.request("GET", path)
                status = conn.getresponse().status
            finally:
                conn.close()
        except ConnectionRefusedError:
            return f"{where} refused the connection"
        except TimeoutError:  # Python 3.9's socket.timeout is not one: reported by the next clause
            return f"{where} did not {probe} within {HEALTH_TIMEOUT:g} s"
        except (OSError, http.client.HTTPException) as e:
            return f"{where} did not {probe}: {type(e).__name__}: {e}"
        return None if status == 200 else f"{where} answered HTTP {status} to GET {path}"

    def _remember(self, port: int) -> None:
        """Write ``port`` to the state file, if any (a failure is reported, never raised)."""
        try:
            if self.state_file is not None:
                with open(f"{self.state_file}.tmp", "w") as f:
                    f.write(str(port))
                os.replace(f"{self.state_file}.tmp", self.state_file)
        except OSError as e:
            print(f"router: could not write the upstream to {self.state_file}: {e}", file=sys.stderr, flush=True)

    def _remembered(self) -> int | None:
        """The port in the state file; None when there is none (no file, or not a port)."""
        try:
            with open(self.state_file or "") as f:
                text = f.read(16).strip()
        except OSError:
            return None  # no state file (not configured, or never switched)
        return int(text) if text.isdigit() and 0 < int(text) < 65536 else None

    def _count(self, port: int, delta: int) -> None:
        with self._lock:
            self._open[port] = self._open.get(port, 0) + delta

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Router:
        """Bind both ports and serve in background threads (the bound ports are in the attributes).

        The upstream is the state file's port when it holds one (this router was restarted).
        """
        remembered = self._remembered()
        if remembered is not None and remembered != self._upstream:
            print(f"router: upstream {remembered} from {self.state_file} (switched before a restart)", flush=True)
            self._upstream = remembered
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.listen_port))
        listener.listen(1024)
        listener.settimeout(0.5)
        self._listener = listener
        self.listen_port = listener.getsockname()[1]
        threads = [threading.Thread(target=self._accept_loop, name="router-accept", daemon=True)]
        if self.admin_port >= 0:
            self._admin = ThreadingHTTPServer((self.admin_host, self.admin_port), _handler(self))
            self._admin.daemon_threads = True
            self.admin_port = self._admin.server_address[1]
            threads.append(threading.Thread(target=self._admin.serve_forever, name="router-admin", daemon=True))
        for t in threads:
            t.start()
        self._threads = threads
        return self

    def stop(self) -> None:
        """Stop accepting and close the admin API (open connections end with the process)."""
        self._stopped.set()
        if self._admin is not None:
            self._admin.shutdown()
            self._admin.server_close()
        for t in self._threads:
            t.join(timeout=5)
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until :meth:`stop` (or the process ends)."""
        self._stopped.wait()

    # --- data plane ------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                continue
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._accepted += 1
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        port = self.upstream
        try:
            up = _connect(self.upstream_host, port)
        except OSError as e:
            print(f"router: upstream {port} refused a connection: {e}", file=sys.stderr, flush=True)
            client.close()
            return
        self._count(port, 1)
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, "client")
        sel.register(up, selectors.EVENT_READ, "up")
        reading = {"client", "up"}
        last = ""  # direction of the last bytes: "up" (client -> upstream) or "down"
        try:
            while reading:
                for key, _ in sel.select():
                    side = key.data
                    data = (client if side == "client" else up).recv(BUFFER)
                    if side == "up":
                        if not data:
                            reading.discard("up")
                            sel.unregister(up)
                            _half_close(client)
                            continue
                        client.sendall(data)
                        last = "down"
                        continue
                    if not data:
                        reading.discard("client")
                        sel.unregister(client)
                        _half_close(up)
                        continue
                    if self.migrate and last == "down" and _REQUEST_START.match(data):
                        target = self.upstream
                        if target != port:
                            try:
                                new = _connect(self.upstream_host, target)
                            except OSError:
                                pass  # the new upstream does not answer: this request stays where it was
                            else:
                                if "up" in reading:
                                    sel.unregister(up)
                                up.close()
                                self._count(port, -1)
                                up, port = new, target
                                self._count(port, 1)
                                with self._lock:
                                    self._migrated += 1
                                sel.register(up, selectors.EVENT_READ, "up")
                                reading.add("up")
                    up.sendall(data)
                    last = "up"
        except OSError:
            pass  # a reset on either side ends the connection (the other side is closed below)
        finally:
            sel.close()
            self._count(port, -1)
            for s in (client, up):
                with contextlib.suppress(OSError):
                    s.close()


def _handler(router: Router) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ml-router"

        def _send(self, code: int, body: Any) -> None:
            data = (json.dumps(body) if not isinstance(body, str) else body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            """True when no token is configured or the request carries it; else answers 401."""
            if router.admin_token is None:
                return True
            given = self.headers.get("Authorization") or ""
            if hmac.compare_digest(given.encode(), f"Bearer {router.admin_token}".encode()):
                return True
            self.rfile.read(int(self.headers.get("Content-Length") or 0))  # drain the body before answering
            self._send(401, {"error": f"missing or wrong bearer token (the router's ${TOKEN_ENV})"})
            return False

        def do_GET(self) -> None:
            if self.path != "/health" and not self._authorized():
                return
            if self.path == "/state":
                self._send(200, router.state())
            elif self.path == "/health":
                reason = router.health()
                if reason is None:
                    self._send(200, "ok")
                else:
                    self._send(503, reason)
            else:
                self._send(404, {"error": f"no such path {self.path}; use /state, /health or PUT /upstream"})

        def do_PUT(self) -> None:
            if not self._authorized():
                return
            if self.path != "/upstream":
                self._send(404, {"error": 'use PUT /upstream with {"port": N}'})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                port = int(body["port"])
                if not 0 < port < 65536:
                    raise ValueError(port)
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": 'body must be {"port": N} with 0 < N < 65536'})
                return
            try:
                previous = router.switch(port)
            except OSError as e:
                self._send(409, {"error": f"nothing accepts connections on {router.upstream_host}:{port}: {e}"})
                return
            self._send(200, {"upstream": port, "previous": previous})

        do_POST = do_PUT

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="router", description="TCP router with a switchable upstream.")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--admin-host", default="127.0.0.1")
    parser.add_argument("--tcp-only", action="store_true", help="never move a connection to a new upstream")
    parser.add_argument("--health-path", help="GET /health needs a 200 from GET <this path> on the upstream")
    parser.add_argument("--state-file", help="remember the upstream here across restarts")
    args = parser.parse_args(argv)
    router = Router(
        args.listen_port,
        args.upstream_port,
        args.admin_port,
        listen_host=args.listen_host,
        upstream_host=args.upstream_host,
        admin_host=args.admin_host,
        migrate=not args.tcp_only,
        admin_token=os.environ.get(TOKEN_ENV),
        health_path=args.health_path,
        state_file=args.state_file,
    ).start()
    print(
        f"router: listening on {router.listen_host}:{router.listen_port}, upstream "
        f"{router.upstream_host}:{router.upstream}, admin {router.admin_host}:{router.admin_port}"
        + (" (token required)" if router.admin_token else " (no token: anyone reaching it can switch)"),
        flush=True,
    )
    router.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

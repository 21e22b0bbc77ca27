"""Steady HTTP load on a local port while something changes behind it (a blue/green redeploy).

Shared by the deploy test and the endpoint benchmark: two client threads, one reusing a
keep-alive connection and one opening a new connection per request, each sending a request
every ``period`` seconds and recording the outcome with its time.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

#: What a failed request may raise (besides the request function's own ``AssertionError``/``RuntimeError``).
_FAILURES = (OSError, http.client.HTTPException, AssertionError, RuntimeError)


def free_port_pair() -> int:
    """A port p with p and p + 1 both free on 127.0.0.1 (an endpoint's port and its control port)."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


class RequestLoad:
    """Context manager: the two clients run while the block runs.

    :param port: the local port to call.
    :param request: sends one request on the given connection and returns what to record (it
        raises on a bad answer).
    :param period: seconds each client sleeps between requests.
    :param limit: stop after this many requests in all (a guard for long blocks).
    """

    def __init__(
        self,
        port: int,
        request: Callable[[http.client.HTTPConnection], Any],
        period: float = 0.01,
        limit: int = 20000,
    ) -> None:
        self.port, self.request, self.period, self.limit = port, request, period, limit
        #: ``(monotonic time, request's return value)`` of every success.
        self.ok: list[tuple[float, Any]] = []
        #: one line per failed request: which client, the exception.
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(keep,)) for keep in (True, False)]

    def _loop(self, keep_alive: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set() and len(self.ok) + len(self.failed) < self.limit:
            try:
                self.ok.append((time.monotonic(), self.request(conn)))
            except _FAILURES as e:
                self.failed.append(f"{'keep-alive' if keep_alive else 'new conn'}: {type(e).__name__}: {e}")
                conn.close()
            if not keep_alive:
                conn.close()  # http.client opens a new connection for the next request
            time.sleep(self.period)
        conn.close()

    def __enter__(self) -> RequestLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    @property
    def longest_gap(self) -> float:
        """The longest time in seconds between two successes (of either client)."""
        stamps = sorted(t for t, _ in self.ok)
        return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)

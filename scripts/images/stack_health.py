#!/usr/bin/env python3
"""Health checks of the compose stack's services (``docker-compose.yaml``), standard library only.

Hand-written rather than ``curl``: the images are built on the project's Debian base image, which
has ``python3`` but no ``curl``, and a check here reads the JSON a service reports about itself
(Airflow's component health, the NameNode's live DataNodes, the Spark master's ALIVE workers)
instead of only asking whether a port answers. Each check is one short HTTP GET (no proxy, a
timeout), prints one line (Docker keeps it in ``docker inspect``'s health log) and exits 0 when
healthy, 1 when not.

Usage (the image installs this file as ``/usr/local/bin/stack-health``)::

    stack-health http URL                        # any 2xx answer
    stack-health airflow URL COMPONENT...        # GET URL (/api/v2/monitor/health): each component "healthy"
    stack-health hdfs URL --datanodes N          # NameNode at URL: answers, N live DataNodes or more
    stack-health spark URL --workers N           # master web UI at URL: ALIVE, N ALIVE workers or more
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

#: Seconds for one request; Docker's own healthcheck timeout should be larger.
TIMEOUT = 5.0


class Unhealthy(Exception):
    """The service answered, or failed to, in a way that is not healthy (the message says how)."""


def fetch(url: str, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """GET ``url`` without any proxy; (status, body). Raises :class:`Unhealthy` when nothing answers.

    :param url: an ``http://`` URL.
    :param timeout: seconds before giving up.
    """
    if not url.startswith(("http://", "https://")):
        raise Unhealthy(f"{url!r} is not an http(s) URL")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (OSError, ValueError) as e:  # refused, timed out, bad URL
        raise Unhealthy(f"{url}: no answer ({type(e).__name__}: {e})") from e


def fetch_json(url: str) -> Any:
    """GET ``url``; its JSON body. Raises :class:`Unhealthy` on a non-2xx answer or a body that is not JSON."""
    status, body = fetch(url)
    if not 200 <= status < 300:
        raise Unhealthy(f"{url}: HTTP {status}")
    try:
        return json.loads(body)
    except ValueError as e:
        raise Unhealthy(f"{url}: the answer is not JSON ({e})") from e


def check_http(url: str) -> str:
    """Healthy when ``url`` answers 2xx."""
    status, _ = fetch(url)
    if not 200 <= status < 300:
        raise Unhealthy(f"{url}: HTTP {status}")
    return f"{url}: HTTP {status}"


def airflow_states(health: Any, components: Sequence[str]) -> dict[str, str]:
    """Each of ``components``' status in Airflow's ``/api/v2/monitor/health`` answer (``missing`` if absent).

    :param health: the decoded answer, e.g. ``{"metadatabase": {"status": "healthy"}, "scheduler": {...}}``.
    :param components: names such as ``metadatabase``, ``scheduler``, ``triggerer``, ``dag_processor``.
    """
    states: dict[str, str] = {}
    for name in components:
        part = health.get(name) if isinstance(health, dict) else None
        status = part.get("status") if isinstance(part, dict) else None
        states[name] = status if isinstance(status, str) else "missing"
    return states


def check_airflow(url: str, components: Sequence[str]) -> str:
    """Healthy when every one of ``components`` reports ``healthy`` at ``url``."""
    states = airflow_states(fetch_json(url), components)
    line = ", ".join(f"{k}={v}" for k, v in states.items())
    if any(v != "healthy" for v in states.values()):
        raise Unhealthy(line)
    return line


def live_datanodes(jmx: Any) -> int:
    """``NumLiveDataNodes`` from the NameNode's ``/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState``."""
    beans = jmx.get("beans") if isinstance(jmx, dict) else None
    if not isinstance(beans, list) or not beans or not isinstance(beans[0], dict):
        raise Unhealthy("the NameNode's JMX answer has no FSNamesystemState bean")
    return int(beans[0].get("NumLiveDataNodes", 0))


def check_hdfs(url: str, datanodes: int) -> str:
    """Healthy when the NameNode at ``url`` (its HTTP address) knows at least ``datanodes`` live DataNodes."""
    base = url.rstrip("/")
    live = live_datanodes(fetch_json(f"{base}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"))
    if live < datanodes:
        raise Unhealthy(f"{base}: {live} live DataNode(s), want {datanodes}")
    return f"{base}: {live} live DataNode(s)"


def alive_workers(status: Any) -> int:
    """ALIVE workers offering cores and memory in a Spark master's ``/json/`` answer."""
    workers = status.get("workers") if isinstance(status, dict) else None
    return sum(
        1
        for w in workers or []
        if isinstance(w, dict) and w.get("state") == "ALIVE" and w.get("cores", 0) > 0 and w.get("memory", 0) > 0
    )


def check_spark(url: str, workers: int) -> str:
    """Healthy when the master whose web UI is ``url`` is ALIVE with at least ``workers`` ALIVE workers."""
    base = url.rstrip("/")
    status = fetch_json(f"{base}/json/")
    state = status.get("status") if isinstance(status, dict) else None
    alive = alive_workers(status)
    if state != "ALIVE" or alive < workers:
        raise Unhealthy(f"{base}: master {state}, {alive} ALIVE worker(s), want {workers}")
    return f"{base}: master ALIVE, {alive} ALIVE worker(s)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; 0 healthy, 1 not (one line on stdout either way), 2 bad arguments."""
    parser = argparse.ArgumentParser(prog="stack-health", description="Health checks of the compose stack.")
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("http", help="any 2xx answer")
    p.add_argument("url")
    p = sub.add_parser("airflow", help="components of /api/v2/monitor/health are healthy")
    p.add_argument("url")
    p.add_argument("components", nargs="+")
    p = sub.add_parser("hdfs", help="the NameNode knows enough live DataNodes")
    p.add_argument("url", help="the NameNode's HTTP address, e.g. http://127.0.0.1:9870")
    p.add_argument("--datanodes", type=int, default=0)
    p = sub.add_parser("spark", help="the master is ALIVE with enough ALIVE workers")
    p.add_argument("url", help="the master's web UI, e.g. http://127.0.0.1:8081")
    p.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.check == "http":
            line = check_http(args.url)
        elif args.check == "airflow":
            line = check_airflow(args.url, args.components)
        elif args.check == "hdfs":
            line = check_hdfs(args.url, args.datanodes)
        else:
            line = check_spark(args.url, args.workers)
    except Unhealthy as e:
        print(f"unhealthy: {e}")
        return 1
    print(f"healthy: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the ``.env`` of ``docker-compose.yaml`` from ``.env.example``, with fresh random secrets.

``.env.example`` is the one list of the stack's variables, with comments; this copies it line by
line and fills in what a user would have to invent: every empty secret (database and broker
passwords as URL-safe tokens, the admin's password, Airflow's Fernet key, the api-server's secret
key and JWT secret) and ``DOCKER_GID`` (the group of the Docker socket on this machine). Values
given with ``--set KEY=VALUE`` win; ``--free-ports`` gives every ``*_PORT`` a port that is free on
127.0.0.1 now (for a test run beside other services). The file is written with mode 0600, and an
existing ``.env`` is left alone unless ``--force``. Nothing secret is printed.

Command line::

    python -m scripts.compose_env [--output .env] [--force] [--free-ports] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / ".env.example"
DEFAULT_OUTPUT = ROOT / ".env"
DOCKER_SOCKET = Path("/var/run/docker.sock")


def _token() -> str:
    """A password that may go into a URL unescaped (letters, digits, ``-`` and ``_``)."""
    return secrets.token_urlsafe(24)


def _fernet_key() -> str:
    """A Fernet key, as Airflow's ``[core] fernet_key`` takes it (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _long_secret() -> str:
    return secrets.token_urlsafe(48)


#: The secrets this fills in when ``.env.example`` leaves them empty, and how each is made.
SECRETS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": _token,
    "AIRFLOW_DB_PASSWORD": _token,
    "ERP_DB_PASSWORD": _token,
    "MLFLOW_DB_PASSWORD": _token,
    "SOURCE_DB_PASSWORD": _token,
    "REDIS_PASSWORD": _token,
    "AIRFLOW_ADMIN_PASSWORD": _token,
    "AIRFLOW_FERNET_KEY": _fernet_key,
    "AIRFLOW_API_SECRET_KEY": _long_secret,
    "AIRFLOW_JWT_SECRET": _long_secret,
}
_ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def template_keys(text: str) -> list[str]:
    """The variables ``KEY=value`` lines of an env file assign, in order (comments and blanks skipped)."""
    return [m.group(1) for line in text.splitlines() if (m := _ASSIGNMENT.match(line.strip()))]


def docker_gid(socket_path: Path = DOCKER_SOCKET) -> str | None:
    """The group id owning the Docker socket, or None when there is no socket."""
    try:
        return str(socket_path.stat().st_gid)
    except OSError:
        return None


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default when unreadable)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_ports(count: int, lowest: int = 20000) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now, below the ephemeral range when possible.

    Ports the kernel hands out for outgoing connections (the ephemeral range) could be taken by
    one of the stack's own clients before its server binds them, so the ports are drawn at random
    from ``lowest`` up to the range's start; where that leaves too few, the kernel picks. All are
    held open while picking, so they are distinct.
    """
    start, _ = ephemeral_range()
    candidates = list(range(lowest, start))
    secrets.SystemRandom().shuffle(candidates)
    candidates += [0] * count  # port 0: the kernel picks one
    socks: list[socket.socket] = []
    try:
        for port in candidates:
            if len(socks) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def fill(
    text: str,
    overrides: Mapping[str, str],
    *,
    generators: Mapping[str, Callable[[], str]] = SECRETS,
    gid: str | None = None,
) -> str:
    """``text`` (an env file) with its assignments completed.

    :param text: the template, ``.env.example``'s text.
    :param overrides: values that replace the template's, by key (a key the template lacks is appended).
    :param generators: for each secret key, how to make a value when the template leaves it empty.
    :param gid: the value for an empty ``DOCKER_GID`` (None: leave it empty).
    :return: the file's text: comments kept, each ``KEY=`` line holding its final value.
    """
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        m = _ASSIGNMENT.match(line.strip())
        if not m:
            out.append(line)
            continue
        key, value = m.group(1), m.group(2)
        seen.add(key)
        if key in overrides:
            value = overrides[key]
        elif not value and key in generators:
            value = generators[key]()
        elif not value and key == "DOCKER_GID" and gid is not None:
            value = gid
        out.append(f"{key}={value}")
    out.extend(f"{key}={value}" for key, value in overrides.items() if key not in seen)
    return "\n".join(out) + "\n"


#: Ports whose next port is taken too (the model endpoint's router listens on port + 1 for control).
PAIRED_PORTS = frozenset({"ML_PIPELINE_ENDPOINT_PORT"})


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_overrides(keys: Sequence[str]) -> dict[str, str]:
    """A free port on 127.0.0.1 for each ``*_PORT`` key among ``keys``; for :data:`PAIRED_PORTS` the next one too."""
    port_keys = [k for k in keys if k.endswith("_PORT")]
    chosen = free_ports(len(port_keys) * 2)  # spares for the pairs
    ports = chosen[: len(port_keys)]
    spares = chosen[len(port_keys) :]
    for i, key in enumerate(port_keys):
        if key not in PAIRED_PORTS:
            continue
        taken = set(ports) - {ports[i]}
        for candidate in [ports[i], *spares]:
            if candidate in taken or candidate + 1 in taken or not _bindable(candidate + 1):
                continue
            ports[i] = candidate
            break
        else:
            raise SystemExit(f"compose_env: no free pair of ports for {key}; set it with --set {key}=PORT")
    return dict(zip(port_keys, (str(p) for p in ports), strict=True))


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` arguments as a dict; SystemExit(2) naming a malformed one."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.match(r"^[A-Z][A-Z0-9_]*$", key):
            raise SystemExit(f"compose_env: --set {item!r}: write KEY=VALUE with an upper-case KEY")
        result[key] = value
    return result


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (through a temporary file and a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the env file; 0 when written, 1 when it exists already (without ``--force``)."""
    parser = argparse.ArgumentParser(prog="python -m scripts.compose_env", description=__doc__.split("\n")[0])
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the template (default .env.example)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the file to write (default .env)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--free-ports", action="store_true", help="give every *_PORT a free port of 127.0.0.1")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a value to use")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        print(f"compose_env: {args.output} exists; keeping it (--force replaces it, secrets and all)", file=sys.stderr)
        return 1
    text = args.template.read_text()
    overrides = port_overrides(template_keys(text)) if args.free_ports else {}
    overrides.update(parse_sets(args.set))
    gid = docker_gid()
    write_private(args.output, fill(text, overrides, gid=gid))
    empty = {m.group(1) for line in text.splitlines() if (m := _ASSIGNMENT.match(line.strip())) and not m.group(2)}
    made = [k for k in SECRETS if k in empty and k not in overrides]
    shown_gid = overrides.get("DOCKER_GID", gid) or "unset"
    print(f"compose_env: wrote {args.output} (new secrets: {', '.join(made) or 'none'}; DOCKER_GID={shown_gid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

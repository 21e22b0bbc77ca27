"""Imports that moved between Airflow 3 minor releases, resolved in one place."""

from __future__ import annotations

import datetime as dt
from typing import Any

try:  # Airflow >= 3.2
    from airflow.sdk import conf
except ImportError:  # pragma: no cover - Airflow 3.1
    from airflow.configuration import conf  # type: ignore[assignment,no-redef,unused-ignore]


def default_deferrable() -> bool:
    """The deployment's ``[operators] default_deferrable`` setting (False when unset)."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def default_timezone() -> dt.tzinfo:
    """The deployment's ``[core] default_timezone``: the zone Airflow reads naive times in.

    Resolved as Airflow's own ``timezone.initialize`` does (``system`` is the machine's zone, any
    other value an IANA name or an offset), so a naive ``newer_than`` means what a naive time
    means everywhere else in Airflow.
    """
    import pendulum

    # pendulum.timezone and local_timezone are functions at run time; mypy sees submodules of those names.
    zones: Any = pendulum
    name = conf.get("core", "default_timezone", fallback="utc") or "utc"
    zone: dt.tzinfo = zones.local_timezone() if name == "system" else zones.timezone(name)
    return zone


__all__ = ["conf", "default_deferrable", "default_timezone"]

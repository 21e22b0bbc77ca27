"""Imports that moved between Airflow 3 minor releases, resolved in one place."""

from __future__ import annotations

try:  # Airflow >= 3.2
    from airflow.sdk import conf
except ImportError:  # pragma: no cover - Airflow 3.1
    from airflow.configuration import conf  # type: ignore[assignment,no-redef,unused-ignore]


def default_deferrable() -> bool:
    """The deployment's ``[operators] default_deferrable`` setting (False when unset)."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


__all__ = ["conf", "default_deferrable"]

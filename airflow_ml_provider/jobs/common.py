"""What the jobs share: their log, the bad-input error and the parsers of ``--week`` and ``--countries``.

Both values become path segments (``{root}/{week}/sales/country={code}``), so they are checked
strictly: a week is a real date written ``YYYY-MM-DD``, a country code only letters, digits, ``_``
and ``-`` (no ``/`` or ``..``). Stdlib only (see the package docstring).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from collections.abc import Sequence

_CODE = re.compile(r"^[A-Za-z0-9_-]+$")
_WEEK = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a line is logged (a test's capture, the container's
    output), and flushes each line so it reaches the task log at once."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> object:
        return sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler assigns it; the property always answers sys.stdout
        pass


def job_logger(name: str) -> logging.Logger:
    """The logger of job ``name``: ``<name>: <message>`` lines on stdout, which the container engine
    hands to the task log (a job runs without Airflow, so not Airflow's logging).

    Levels are not printed, so the lines read as before (``markdown_train: start …``); an error
    line says ``error: …`` in its text. The logger does not propagate, so a process that also
    configured the root logger (a test run under Airflow) prints each line once.
    """
    logger = logging.getLogger(f"airflow_ml_provider.jobs.{name}")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter(f"{name}: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class BadInputError(ValueError):
    """A job's input is wrong (arguments, missing data, bad columns): retrying cannot help.

    A ``ValueError``, so a caller of the Python API (e.g. :func:`airflow_ml_provider.jobs.synthetic.write_week`)
    may catch either; the training job maps it to exit code 2.
    """


def parse_week(week: str) -> dt.date:
    """The date of ``week``, written ``YYYY-MM-DD`` (e.g. ``2026-11-23``).

    :param week: the week's date as given on the command line or to the API.
    :raises BadInputError: not in that form or not a real date (``2026-11-31``); the message names it.
    """
    if isinstance(week, str) and _WEEK.match(week):
        try:
            return dt.date.fromisoformat(week)
        except ValueError:
            pass
    raise BadInputError(f"week {week!r} is not a date like 2026-11-23 (YYYY-MM-DD)")


def parse_countries(value: str | Sequence[str]) -> list[str]:
    """Country codes from ``"DE,FR"`` or ``["DE", "FR"]``: stripped, blanks skipped, de-duplicated in order.

    :param value: a comma-separated string or a sequence of codes.
    :raises BadInputError: a code that is not letters, digits, ``_`` or ``-``, or no code at all;
        the message names the value and shows a valid one.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    countries: list[str] = []
    for item in items:
        code = str(item).strip()
        if not code:
            continue
        if not _CODE.match(code):
            raise BadInputError(
                f"country {code!r} is not a country code: use letters, digits, '_' or '-' only (e.g. DE)"
            )
        if code not in countries:
            countries.append(code)
    if not countries:
        raise BadInputError(f"no country in {value!r}: pass country codes separated by commas, e.g. DE,FR")
    return countries

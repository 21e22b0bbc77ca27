"""The drop guard: per key, the new row count against the count it replaces.

A key whose new count is below ``(1 - max_drop)`` times its old count (strictly: exactly 10% fewer
with ``max_drop=0.10`` passes) fails the write with
:class:`~airflow_ml_provider.exceptions.DropGuardError` naming the keys, or only warns with
``on_drop="warn"``. A key with no old rows has nothing to compare with and passes; when no key
has old rows (a first run) the log says so. Counts are compared as exact fractions, so the
boundary does not depend on float rounding.

This module is pure Python (no database, no pyarrow).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, NamedTuple

from airflow_ml_provider.exceptions import DropGuardError, InvalidSpecError

ON_DROP = ("fail", "warn")
DEFAULT_MAX_DROP = 0.10


class KeyCount(NamedTuple):
    """One key's rows before and after the write.

    :param key: the key as text (several key columns joined with ``|``).
    :param old: rows in the table now, being replaced.
    :param new: rows in the input.
    """

    key: str
    old: int
    new: int

    @property
    def change(self) -> float | None:
        """The change in percent (``-20.0``), ``None`` when there were no old rows."""
        return None if self.old == 0 else round((self.new - self.old) * 100 / self.old, 2)


def check_max_drop(max_drop: Any, on_drop: Any) -> float:
    """Validate the guard's arguments; ``max_drop`` as a number, or :class:`InvalidSpecError` naming the wrong one.

    A string that spells a number (``"0.1"``, as a template renders it) is read as that number.
    """
    value = max_drop
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidSpecError(f"max_drop={max_drop!r} must be a fraction between 0 and 1, e.g. 0.10 for 10%.")
    if on_drop not in ON_DROP:
        raise InvalidSpecError(f"on_drop={on_drop!r} must be one of {list(ON_DROP)}, e.g. on_drop='warn'.")
    return float(value)


def dropped(counts: Sequence[KeyCount], max_drop: float) -> list[KeyCount]:
    """The keys whose new count is below ``(1 - max_drop)`` times a non-zero old count."""
    keep = 1 - Fraction(str(max_drop))
    return [c for c in counts if c.old > 0 and Fraction(c.new) < c.old * keep]


def table(counts: Sequence[KeyCount]) -> str:
    """The counts as a fixed-width text table for the task log."""
    rows = [("key", "old", "new", "change")] + [
        (c.key, str(c.old), str(c.new), "first run" if c.change is None else f"{c.change:+.2f}%") for c in counts
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    )


def apply(counts: Sequence[KeyCount], *, table_name: str, max_drop: float, on_drop: str, log: Any) -> None:
    """Log the counts as a table, then pass, warn or raise.

    :param counts: every key being replaced.
    :param table_name: the target table, for messages.
    :param max_drop: the largest allowed drop, as a fraction of the old count.
    :param on_drop: ``"fail"`` raises, ``"warn"`` logs a warning and lets the write go on.
    :param log: the task's logger.
    :raises DropGuardError: with ``on_drop="fail"``; ``keys`` lists the failing keys.
    """
    log.info("Row counts per key in %s (old: being replaced, new: input):\n%s", table_name, table(counts))
    if counts and all(c.old == 0 for c in counts):
        log.info("Drop guard: %s has no rows for these keys yet (first run); nothing to compare, passing.", table_name)
    bad = dropped(counts, max_drop)
    if not bad:
        return
    detail = ", ".join(f"{c.key}: {c.old} -> {c.new} ({c.change:+.2f}%)" for c in bad)
    message = (
        f"Drop guard: the new row count of {len(bad)} key(s) in {table_name} is more than {max_drop:.0%} below "
        f"the rows it replaces: {detail}. Check the upstream predictions; if the drop is expected, rerun with a "
        "larger max_drop or on_drop='warn'"
    )
    if on_drop == "warn":
        log.warning("%s. Writing anyway (on_drop='warn').", message)
        return
    raise DropGuardError(f"{message}. Nothing was written.", keys=[c.key for c in bad])


def xcom_counts(counts: Sequence[KeyCount]) -> dict[str, dict[str, Any]]:
    """``{key: {"old", "new", "change"}}`` for XCom."""
    return {c.key: {"old": c.old, "new": c.new, "change": c.change} for c in counts}

"""Turning foreign error texts (HTTP answers, JVM stacks, library exceptions) into message parts."""

from __future__ import annotations

import re

_SECRET_PARAM = re.compile(r"(delegation|token|password)=[^&\s'\"]+", re.IGNORECASE)


def first_line(text: str, limit: int = 400) -> str:
    """The first line of ``text``, at most ``limit`` characters, with credentials in URL queries redacted."""
    stripped = (text or "").strip()
    line = stripped.splitlines()[0][:limit] if stripped else ""
    return _SECRET_PARAM.sub(r"\1=***", line)

"""Shared test settings: where test beds live, and what a missing service means."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Scratch space of the real services started by the tests (ignored by git).
TESTBED = ROOT / ".testbed"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_unavailable(reason: str) -> NoReturn:
    """Under CI=true a missing service fails the test; elsewhere it skips with a one-line reason."""
    if IN_CI:
        pytest.fail(f"service unavailable (CI=true, so this fails rather than skips): {reason}", pytrace=False)
    pytest.skip(reason)

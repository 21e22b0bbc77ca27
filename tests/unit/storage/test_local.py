"""The local-disk storage backend, on the real local file system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_ml_provider.exceptions import StorageRefusedError
from airflow_ml_provider.storage.local import LocalStorage


def test_stat_and_list(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "d" / "sub").mkdir()
    storage = LocalStorage(str(tmp_path))
    info = storage.stat("/d/_SUCCESS")
    assert info is not None
    assert info.kind == "FILE"
    assert info.path == "/d/_SUCCESS"
    assert info.modification_time.tzinfo is not None
    assert storage.stat("/d/nope") is None
    assert storage.stat("/d/_SUCCESS/below") is None  # parent is a file: not there
    listing = storage.list_dir("/d")
    assert listing is not None
    assert {k: v.kind for k, v in listing.items()} == {"_SUCCESS": "FILE", "sub": "DIRECTORY"}
    assert storage.list_dir("/missing") is None


def test_list_of_a_file_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageRefusedError, match="is a file, not a directory"):
        LocalStorage(str(tmp_path)).list_dir("/f")
    assert LocalStorage(str(tmp_path)).list_dir("/f/sub") is None  # under a file: not there, as HDFS says


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_permission_denied_is_permanent_not_missing(tmp_path: Path) -> None:
    """Run as 'nobody' against a 0700 directory: a refusal, never 'not there yet'."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "_SUCCESS").write_text("")
    locked.chmod(0o700)
    tmp_path.chmod(0o755)
    code = (
        "import os\n"
        "from airflow_ml_provider.storage.local import LocalStorage\n"
        "from airflow_ml_provider.exceptions import StorageRefusedError\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"s = LocalStorage({str(tmp_path)!r})\n"
        "for call in (lambda: s.stat('/locked/_SUCCESS'), lambda: s.list_dir('/locked')):\n"
        "    try:\n        call(); print('NO ERROR')\n"
        "    except StorageRefusedError as e:\n        print('DENIED', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert all(line.startswith("DENIED") and "was refused: Permission denied" in line for line in lines), out
    assert "/locked" in out

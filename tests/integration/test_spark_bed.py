"""The Spark standalone test bed (:mod:`scripts.testbed.spark_bed`): a real Master and Worker from the
venv's ``pyspark``, a real ``spark-submit`` against them, and nothing left running after ``stop()``.

A Spark application takes 15-20 s on 2 cores, so the module submits exactly one.
"""

from __future__ import annotations

import contextlib
import subprocess
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from scripts.testbed import spark_bed

pytestmark = pytest.mark.integration

_APP = """\
import sys

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName(sys.argv[1]).getOrCreate()
count = spark.range(1000).count()
with open(sys.argv[2], "w") as out:
    out.write(str(count))
spark.stop()
"""


def _processes_mentioning(base: Path) -> list[str]:
    """Command lines of live processes (other than this one) that mention ``base``."""
    from scripts.testbed.procs import processes_mentioning

    found = []
    for pid in processes_mentioning(base):
        with contextlib.suppress(OSError):
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


def test_cluster_has_one_alive_worker(spark_standalone: Any) -> None:
    status = spark_bed.master_status(spark_standalone.ui_url)
    assert status["status"] == "ALIVE"
    assert status["url"] == spark_standalone.master_url
    alive = [w for w in status["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == 1, status["workers"]
    assert alive[0]["cores"] == 2
    assert alive[0]["memory"] == 2048
    assert alive[0]["host"] == "127.0.0.1"
    assert spark_standalone.ui_url != "http://127.0.0.1:8080"  # Airflow's port stays free
    assert set(spark_bed.applications(spark_standalone.ui_url)) == {"active", "completed"}


def test_submitted_application_finishes(spark_standalone: Any, tmp_path: Path) -> None:
    app = tmp_path / "count_rows.py"
    app.write_text(textwrap.dedent(_APP))
    result = tmp_path / "count.txt"
    name = f"bed-count-{uuid.uuid4().hex[:8]}"
    cmd = [
        spark_bed.spark_submit(),
        "--master",
        spark_standalone.master_url,
        "--conf",
        "spark.ui.enabled=false",
        "--executor-memory",
        "512m",
        str(app),
        name,
        str(result),
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=spark_bed.submit_env(), capture_output=True, text=True, timeout=120, check=False)
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result.read_text() == "1000"
    apps = spark_bed.applications(spark_standalone.ui_url)
    mine = [a for a in apps["completed"] if a["name"] == name]
    assert len(mine) == 1, apps
    assert mine[0]["state"] == "FINISHED"
    assert not [a for a in apps["active"] if a["name"] == name]
    print(f"spark-submit took {took:.1f} s")


def test_stop_leaves_no_jvm(tmp_path: Path) -> None:
    base = tmp_path / "bed"
    cluster = spark_bed.start_spark(base, cores=1, memory="512m")
    try:
        print(f"cluster started in {cluster.started_in:.1f} s")
        running = _processes_mentioning(base)
        assert len([c for c in running if "java" in c]) == 2, running
        assert (base / "pids").is_file()
    finally:
        cluster.stop()
    assert _processes_mentioning(base) == []
    assert not (base / "pids").exists()
    cluster.stop()  # idempotent

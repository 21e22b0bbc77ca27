"""The dev/test bed: real services for the tests, the demo and the benchmarks.

Nothing here ships in the wheel. Tests (``tests/``), benchmarks (``bench/``) and the demo
(``scripts/demo.py``) import from this package alone, never from each other:

* ``hdfs`` / ``hadoop_dist`` -- Hadoop 2.7.3 NameNode/DataNode (single and HA) from cached jars;
* ``docker_bed`` / ``serve_image`` -- dockerd, the one-node Swarm and the locally built images;
* ``mlflow_bed`` -- a real ``mlflow server``; ``predict_data`` -- small models and Parquet data;
* ``spark_bed`` -- a Spark standalone Master and Worker from the venv's ``pyspark``;
* ``metronome_server`` -- a DC/OS Metronome v1 test server;
* ``airflow_bed`` -- scheduler, triggerer, dag-processor and API server in a throwaway home;
* ``browser`` -- Debian's Chromium driven headless by Playwright against a bed's Airflow UI;
* ``demo_stack`` -- ``ml_pipeline`` on embedded defaults (SQLite source and ERP, ``file://``, a local
  MLflow server) on an ``airflow_bed``: ``make demo``, its tests, the browser test and its benchmark;
* ``compose_bed`` / ``compose_api`` -- the top-level ``docker-compose.yaml`` stack built, started, checked
  and removed, and a client of its REST API;
* ``install_bed`` -- the built sdist/wheel, and plain-Airflow venvs with each extra installed;
* ``smtp_bed`` -- an aiosmtpd SMTP server on loopback that keeps what it receives;
* ``counting_proxy`` / ``request_load`` -- request counting and HTTP load on loopback.

Every service lives under :data:`TESTBED` (``.testbed/``, ignored by git); downloads and built
images are cached under ``.cache/``.
"""

from __future__ import annotations

from pathlib import Path

#: The repository's root directory.
ROOT = Path(__file__).resolve().parents[2]
#: Scratch space of the real services the bed starts (ignored by git).
TESTBED = ROOT / ".testbed"


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie (read from ``/proc``; Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"

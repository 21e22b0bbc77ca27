"""``triggerer_scale_<lo>_<hi>``: waits ``lo..hi-1`` of the triggerer benchmark, one mapped deferrable sensor.

Used by ``bench/triggerer_scale.py`` in a real Airflow. Wait ``i`` watches directory
``d{i % 50}`` under ``TRIGGERER_SCALE_ROOT``: many waits share one upstream dataset, as when many
DAGs wait for the same partition. Read from the environment at parse time:

* ``TRIGGERER_SCALE_VARIANT`` -- ``stock`` (``FileSensor`` on ``<root>/dNN/_SUCCESS``), ``ours``
  (``HdfsSuccessSensor`` on ``file://<root>/dNN``) or ``ours_hdfs`` (``HdfsSuccessSensor`` on the
  HDFS path ``<root>/dNN`` through ``ml_hdfs_default``);
* ``TRIGGERER_SCALE_ROOT`` -- the directory holding ``d00`` .. ``d49``;
* ``TRIGGERER_SCALE_SIZES`` -- cumulative sizes, e.g. ``100,500,1000``: one DAG per step
  (``triggerer_scale_0_100``, ``triggerer_scale_100_500``, ...), so each step is one more run.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

VARIANT = os.environ.get("TRIGGERER_SCALE_VARIANT", "ours")
ROOT = os.environ.get("TRIGGERER_SCALE_ROOT", "/tmp/triggerer_scale")
SIZES = [int(s) for s in os.environ.get("TRIGGERER_SCALE_SIZES", "100,500,1000").split(",")]
DIRS = 50
POKE_INTERVAL = 10
TIMEOUT = 4 * 3600


def _directory(i: int) -> str:
    return f"{ROOT}/d{i % DIRS:02d}"


for lo, hi in zip([0, *SIZES[:-1]], SIZES, strict=True):
    with DAG(
        dag_id=f"triggerer_scale_{lo}_{hi}",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1),
        catchup=False,
        max_active_tasks=hi - lo,  # deferred task instances count towards it
        tags=["bench"],
    ):
        common = {"task_id": "wait", "poke_interval": POKE_INTERVAL, "timeout": TIMEOUT, "deferrable": True}
        if VARIANT == "stock":
            from airflow.providers.standard.sensors.filesystem import FileSensor

            FileSensor.partial(**common, fs_conn_id="fs_default").expand(
                filepath=[f"{_directory(i)}/_SUCCESS" for i in range(lo, hi)]
            )
        else:
            from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor

            prefix = "file://" if VARIANT == "ours" else ""
            HdfsSuccessSensor.partial(**common).expand(paths=[prefix + _directory(i) for i in range(lo, hi)])

"""Import cost added on top of ``import airflow.sdk``: our modules vs the stock WebHdfsSensor's."""

from __future__ import annotations

import statistics
import subprocess
import sys

from bench.common import Row

SENSOR = ("airflow_ml_provider.sensors.hdfs",)
ALL_OURS = (
    "airflow_ml_provider.sensors.hdfs",
    "airflow_ml_provider.triggers.hdfs",
    "airflow_ml_provider.hooks.webhdfs",
)
STOCK = ("airflow.providers.apache.hdfs.sensors.web_hdfs",)
STOCK_ALL = ("airflow.providers.apache.hdfs.sensors.web_hdfs", "airflow.providers.apache.hdfs.hooks.webhdfs")


def added_import_seconds(modules: tuple[str, ...]) -> float:
    """Seconds to import ``modules`` in a fresh interpreter that has already imported airflow.sdk."""
    code = (
        "import time, importlib, airflow.sdk\n"
        "from airflow.sdk import BaseSensorOperator\n"
        "t = time.perf_counter()\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def run(repeats: int = 11) -> list[Row]:
    """Median over ``repeats`` fresh interpreters, alternating ours and stock."""
    samples: dict[tuple[str, ...], list[float]] = {m: [] for m in (SENSOR, STOCK, ALL_OURS, STOCK_ALL)}
    for _ in range(repeats):
        for modules, values in samples.items():
            values.append(added_import_seconds(modules))

    def ms(modules: tuple[str, ...]) -> float:
        return statistics.median(samples[modules]) * 1000

    note = f"median of {repeats} fresh interpreters each"
    return [
        Row(
            "import cost a DAG file pays on top of airflow.sdk (sensor module)",
            ms(SENSOR),
            ms(STOCK),
            "ms",
            "apache-hdfs WebHdfsSensor module",
            note,
        ),
        Row(
            "import cost of all our HDFS modules (sensor+trigger+hook)",
            ms(ALL_OURS),
            ms(STOCK_ALL),
            "ms",
            "apache-hdfs sensor+hook modules (hook pulls hdfs, requests)",
            note,
        ),
    ]

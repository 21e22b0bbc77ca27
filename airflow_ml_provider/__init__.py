"""airflow-ml-provider: operationalize ML pipelines in Apache Airflow 3.

Importing this package is deliberately cheap: it imports nothing from Airflow or any backend
library, so DAG files that reference our operators parse fast. Submodules are loaded on first
use (``from airflow_ml_provider.sensors.hdfs import HdfsSuccessSensor``).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Package-level contracts: cheap imports, complete provider info."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import airflow_ml_provider
from airflow_ml_provider.provider_info import get_provider_info

HEAVY = ("hdfs", "docker", "mlflow", "pyspark", "pandas", "pyarrow", "requests", "lightgbm", "sklearn")
KINDS = ("hooks", "operators", "sensors", "triggers")


def _modules(kind: str) -> list[str]:
    pkg = importlib.import_module(f"airflow_ml_provider.{kind}")
    return sorted(f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__))


def test_importing_every_module_pulls_in_no_heavy_library() -> None:
    """In a fresh interpreter, as the DAG processor would."""
    modules = [m for kind in (*KINDS, "backends", "utils", "storage", "scoring", "serving") for m in _modules(kind)] + [
        "airflow_ml_provider.provider_info"
    ]
    code = (
        "import sys, json, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(n for n in {HEAVY!r} if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_provider_info_lists_every_module_and_class() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-ml-provider"
    assert info["versions"] == [airflow_ml_provider.__version__]
    for kind in ("hooks", "sensors", "triggers", "operators"):
        listed = sorted(m for entry in info.get(kind, []) for m in entry["python-modules"])
        assert listed == _modules(kind), kind
    for ct in info["connection-types"]:
        module, _, cls = ct["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == ct["connection-type"]
        assert ct["connection-type"] not in ("http", "webhdfs", "docker", "hdfs")
        for name, field in ct["conn-fields"].items():
            assert field["label"], name
            assert "type" in field["schema"], name
        assert set(ct["ui-field-behaviour"]) == {"hidden-fields", "relabeling", "placeholders"}

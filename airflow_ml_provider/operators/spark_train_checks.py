"""The checks of :class:`~airflow_ml_provider.operators.spark_train.SparkTrainOperator`'s submission
arguments (the spec's own fields are checked by :func:`airflow_ml_provider.jobs.spark_spec.parse_spec`).

Pure functions, no I/O: the operator calls them when the DAG is parsed and again after rendering.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_ml_provider.exceptions import InvalidSpecError
from airflow_ml_provider.hooks.mlflow import MlflowHook
from airflow_ml_provider.operators.spark_train_submit import is_local
from airflow_ml_provider.utils.templating import is_templated

_LOG_LEVELS = ("ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN")
_MEMORY = re.compile(r"^\d+[kmgtp]?b?$", re.IGNORECASE)


def check_arguments(op: Any, default_spark_conn_id: str = "spark_default") -> None:
    """Connection ids, memory sizes, core and executor counts, ``spark_binary`` and ``spark_log_level``.

    :param op: the operator.
    :param default_spark_conn_id: the Spark connection named in the message's example.
    :raises InvalidSpecError: naming the argument and a valid example.
    """
    for name, default in (
        ("spark_conn_id", default_spark_conn_id),
        ("mlflow_conn_id", MlflowHook.default_conn_name),
    ):
        value = getattr(op, name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidSpecError(f"{name}={value!r} must name a connection, e.g. {name}={default!r}.")
    for name in ("driver_memory", "executor_memory"):
        value = getattr(op, name)
        if value is not None and (not isinstance(value, str) or not _MEMORY.match(value)):
            raise InvalidSpecError(f"{name}={value!r} must be a Spark memory size such as '2g' or '512m'.")
    for name in ("executor_cores", "num_executors"):
        value = getattr(op, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidSpecError(f"{name}={value!r} must be a whole number >= 1, or None for Spark's default.")
    if op.spark_binary is not None and (not isinstance(op.spark_binary, str) or not op.spark_binary.strip()):
        raise InvalidSpecError(f"spark_binary={op.spark_binary!r} must be a path or a command name, or None.")
    if op.spark_log_level is not None and op.spark_log_level not in _LOG_LEVELS:
        raise InvalidSpecError(f"spark_log_level={op.spark_log_level!r} must be one of {list(_LOG_LEVELS)} or None.")


def check_master_and_conf(master: Any, spark_conf: Any, parse_time: bool = False) -> None:
    """``master`` (a non-empty string or None) and ``spark_conf`` (str -> str or number); templated
    values are left for after rendering when ``parse_time``.

    :raises InvalidSpecError: naming the argument.
    """
    if parse_time and is_templated(master):
        pass
    elif master is not None and (not isinstance(master, str) or not master.strip()):
        raise InvalidSpecError(f"master={master!r} must be a Spark master such as 'local[4]', or None.")
    conf = spark_conf
    if conf is None or (parse_time and is_templated(conf) and not isinstance(conf, Mapping)):
        return
    if not isinstance(conf, Mapping) or not all(isinstance(k, str) and k.strip() for k in conf):
        raise InvalidSpecError(
            f"spark_conf={conf!r} must be a dict of Spark properties, e.g. {{'spark.sql.shuffle.partitions': '8'}}."
        )
    bad = sorted(k for k, v in conf.items() if not isinstance(v, (str, int, float, bool)))
    if bad:
        raise InvalidSpecError(f"spark_conf values must be strings or numbers; {bad} are not.")


def check_deploy_mode(spark_conn_id: str, master: str, cluster: bool) -> None:
    """Refuse ``cluster`` deploy mode on standalone and local masters, where Spark runs no Python
    application in it.

    :raises InvalidSpecError: naming the connection and the fix.
    """
    if cluster and (master.startswith("spark://") or is_local(master)):
        kind = "a local master" if is_local(master) else "Spark standalone"
        raise InvalidSpecError(
            f"Spark connection {spark_conn_id!r} sets deploy-mode 'cluster', which {kind} ({master}) "
            "does not run Python applications in; set its deploy-mode extra to 'client' (or leave it out)."
        )

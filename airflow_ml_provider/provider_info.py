"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Everything is data: the UI draws connection forms from ``conn-fields`` and
``ui-field-behaviour`` without importing hook code. Every extra field has a label and a
description; a cleared field is saved as null, which every hook reads as the field's default.
Connection types are named ``ML provider: <system>`` (:func:`hook_name`), so the form's type list
shows ours together.
"""

from __future__ import annotations

from typing import Any

from airflow_ml_provider import __version__
from airflow_ml_provider.connection_forms import (
    DOCKER_TLS_FIELDS,
    DOCKER_UI_FIELD_BEHAVIOUR,
    HDFS_CONN_FIELDS,
    HDFS_UI_FIELD_BEHAVIOUR,
    METRONOME_CONN_FIELDS,
    METRONOME_UI_FIELD_BEHAVIOUR,
    MLFLOW_CONN_FIELDS,
    MLFLOW_UI_FIELD_BEHAVIOUR,
    SWARM_UI_FIELD_BEHAVIOUR,
    WEBHOOK_CONN_FIELDS,
    WEBHOOK_UI_FIELD_BEHAVIOUR,
)

PACKAGE = "airflow-ml-provider"


def hook_name(system: str) -> str:
    """The display name of one of our connection types: ``ML provider: <system>``."""
    return f"ML provider: {system}"


def documentation_url() -> str | None:
    """The ``Documentation`` URL of the installed distribution (``[project.urls]`` in pyproject.toml).

    Airflow (3.2+) reads the Providers page's link from the same metadata and overrides the
    ``documentation-url`` given here; reading it here keeps the two the same on every Airflow.
    ``None`` when the distribution names none (the page then links to apache.org, which has no
    page for this provider).
    """
    from importlib import metadata

    try:
        urls = metadata.distribution(PACKAGE).metadata.get_all("Project-URL") or []
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return None
    for entry in urls:
        name, _, url = entry.partition(",")
        if name.strip().lower() == "documentation" and url.strip():
            return url.strip()
    return None


#: The notifier classes. The e-mail one needs the smtp provider (the ``smtp`` extra): listed only when it
#: is installed, so the Providers page does not warn about an extra nobody installed.
WEBHOOK_NOTIFIER = "airflow_ml_provider.notifications.webhook.WebhookNotifier"
SMTP_NOTIFIER = "airflow_ml_provider.notifications.smtp.FailureSmtpNotifier"


def notifications() -> list[str]:
    """The notifier classes usable on this machine."""
    from importlib.util import find_spec

    try:
        has_smtp = find_spec("airflow.providers.smtp") is not None
    except (ImportError, ValueError):
        has_smtp = False
    return [WEBHOOK_NOTIFIER, SMTP_NOTIFIER] if has_smtp else [WEBHOOK_NOTIFIER]


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata: hooks, operators, sensors, triggers, connection types and notifiers."""
    return {
        "package-name": PACKAGE,
        "name": "ML pipelines (airflow-ml-provider)",
        "description": (
            "Run ML pipelines in Airflow: an HDFS _SUCCESS marker sensor, container jobs on Docker, Docker Swarm "
            "and DC/OS Metronome, and MLflow model registration, promotion, Docker deployment and batch "
            "prediction (pandas or Spark), an ERP writer that replaces predictions per key in one PostgreSQL, "
            "MariaDB/MySQL or SQLite transaction with a drop guard, SQL ingest into partitioned Parquet, a data "
            "report (EDA) with a quality gate, Spark training (spark-submit: Spark ML with cross-validation, one "
            "LightGBM model per group) logged to MLflow, and failure alerts by e-mail and webhook."
        ),
        "documentation-url": documentation_url(),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "HDFS (WebHDFS)",
                "external-doc-url": "https://hadoop.apache.org/docs/stable/hadoop-project-dist/hadoop-hdfs/WebHDFS.html",
                "tags": ["apache"],
            },
            {
                "integration-name": "Container jobs",
                "external-doc-url": "https://docs.docker.com/engine/api/",
                "tags": ["software"],
            },
            {
                "integration-name": "MLflow",
                "external-doc-url": "https://mlflow.org/docs/latest/ml/model-registry/",
                "tags": ["software"],
            },
            {
                "integration-name": "ERP databases",
                "external-doc-url": "https://www.postgresql.org/docs/current/sql-copy.html",
                "tags": ["software"],
            },
            {
                "integration-name": "SQL ingest",
                "external-doc-url": "https://parquet.apache.org/docs/",
                "tags": ["software"],
            },
            {
                "integration-name": "Spark training",
                "external-doc-url": "https://spark.apache.org/docs/latest/submitting-applications.html",
                "tags": ["apache"],
            },
            {
                "integration-name": "Data profiling (EDA)",
                "external-doc-url": "https://arrow.apache.org/docs/python/parquet.html",
                "tags": ["software"],
            },
            {
                "integration-name": "Failure notifications",
                "external-doc-url": "https://airflow.apache.org/docs/apache-airflow/stable/howto/notifications.html",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {"integration-name": "HDFS (WebHDFS)", "python-modules": ["airflow_ml_provider.hooks.webhdfs"]},
            {"integration-name": "Container jobs", "python-modules": ["airflow_ml_provider.hooks.container"]},
            {"integration-name": "MLflow", "python-modules": ["airflow_ml_provider.hooks.mlflow"]},
            {"integration-name": "Failure notifications", "python-modules": ["airflow_ml_provider.hooks.webhook"]},
        ],
        "operators": [
            {
                "integration-name": "Container jobs",
                "python-modules": [
                    "airflow_ml_provider.operators.container",
                    "airflow_ml_provider.operators.container_args",
                ],
            },
            {
                "integration-name": "MLflow",
                "python-modules": [
                    "airflow_ml_provider.operators.batch_predict",
                    "airflow_ml_provider.operators.mlflow_common",
                    "airflow_ml_provider.operators.mlflow_deploy",
                    "airflow_ml_provider.operators.mlflow_deploy_target",
                    "airflow_ml_provider.operators.mlflow_registry",
                ],
            },
            {"integration-name": "ERP databases", "python-modules": ["airflow_ml_provider.operators.erp_writer"]},
            {"integration-name": "Data profiling (EDA)", "python-modules": ["airflow_ml_provider.operators.eda"]},
            {"integration-name": "SQL ingest", "python-modules": ["airflow_ml_provider.operators.ingest"]},
            {
                "integration-name": "Spark training",
                "python-modules": [
                    "airflow_ml_provider.operators.spark_train",
                    "airflow_ml_provider.operators.spark_train_submit",
                    "airflow_ml_provider.operators.spark_train_result",
                    "airflow_ml_provider.operators.spark_train_checks",
                ],
            },
        ],
        "sensors": [{"integration-name": "HDFS (WebHDFS)", "python-modules": ["airflow_ml_provider.sensors.hdfs"]}],
        "triggers": [
            {
                "integration-name": "HDFS (WebHDFS)",
                "python-modules": ["airflow_ml_provider.triggers.hdfs", "airflow_ml_provider.triggers.shared_polls"],
            },
            {"integration-name": "Container jobs", "python-modules": ["airflow_ml_provider.triggers.container"]},
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_ml_provider.hooks.webhdfs.HdfsHook",
                "hook-name": hook_name("HDFS (WebHDFS)"),
                "connection-type": "ml_hdfs",
                "conn-fields": HDFS_CONN_FIELDS,
                "ui-field-behaviour": HDFS_UI_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_ml_provider.hooks.container.ContainerJobHook",
                "hook-name": hook_name("Docker engine"),
                "connection-type": "ml_docker",
                "conn-fields": DOCKER_TLS_FIELDS,
                "ui-field-behaviour": DOCKER_UI_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_ml_provider.hooks.container.SwarmJobHook",
                "hook-name": hook_name("Docker Swarm"),
                "connection-type": "ml_swarm",
                "conn-fields": DOCKER_TLS_FIELDS,
                "ui-field-behaviour": SWARM_UI_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_ml_provider.hooks.container.MetronomeJobHook",
                "hook-name": hook_name("DC/OS Metronome"),
                "connection-type": "ml_metronome",
                "conn-fields": METRONOME_CONN_FIELDS,
                "ui-field-behaviour": METRONOME_UI_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_ml_provider.hooks.mlflow.MlflowHook",
                "hook-name": hook_name("MLflow"),
                "connection-type": "ml_mlflow",
                "conn-fields": MLFLOW_CONN_FIELDS,
                "ui-field-behaviour": MLFLOW_UI_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_ml_provider.hooks.webhook.WebhookHook",
                "hook-name": hook_name("Webhook"),
                "connection-type": "ml_webhook",
                "conn-fields": WEBHOOK_CONN_FIELDS,
                "ui-field-behaviour": WEBHOOK_UI_FIELD_BEHAVIOUR,
            },
        ],
        "notifications": notifications(),
    }

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


HDFS_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema"],
    "relabeling": {
        "host": "NameNode host(s)",
        "port": "WebHDFS port",
        "login": "HDFS user",
        "password": "Delegation token",
    },
    "placeholders": {
        "host": "nn1.corp,nn2.corp  (or https://nn1.corp:9871, or file:///tmp/lake)",
        "port": "9870",
        "login": "hdfs",
        "password": "only with auth = token",
    },
}

HDFS_CONN_FIELDS: dict[str, Any] = {
    "auth": {
        "label": "Authentication",
        "schema": {"type": ["string", "null"], "enum": ["simple", "token", "kerberos"], "default": "simple"},
        "description": "simple (user name), token (delegation token in Password) or kerberos (ticket cache).",
    },
    "use_ssl": {
        "label": "Use HTTPS",
        "schema": {"type": ["boolean", "null"], "default": False},
        "description": "Use https:// for hosts given without a scheme.",
    },
    "verify": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Off only for testing: the NameNodes' certificates are then not checked. Empty: on.",
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Absolute path, on the workers, of the PEM file of the CA that signed the NameNodes' "
        "certificates. Empty: the system's CAs.",
    },
    "timeout": {
        "label": "HTTP timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30},
        "description": "Per request; a NameNode slower than this is treated as down and the next one is tried. "
        "Empty: 30.",
    },
    "proxy_user": {
        "label": "Proxy user (doas)",
        "schema": {"type": ["string", "null"]},
        "description": "HDFS user to act as (doas); the NameNode must allow the connection's user to impersonate "
        "it. Empty: none.",
    },
    "rpc_port": {
        "label": "NameNode RPC port (Spark)",
        "schema": {"type": ["string", "null"]},
        "description": "For Spark, which reaches HDFS over RPC (hdfs://host:port), not WebHDFS: the NameNodes' "
        "dfs.namenode.rpc-address port: one for all ('8020') or one per Host entry ('8020,8021'). Empty: 8020.",
    },
    "nameservice": {
        "label": "HA nameservice (Spark)",
        "schema": {"type": ["string", "null"]},
        "description": "For Spark with two or more NameNodes: the logical name in hdfs://<name>/ URLs (letters, "
        "digits, '-', '.'). Empty: the connection id with '_' turned into '-'.",
    },
}


#: The installation namespace of container jobs, the same extra on ml_docker, ml_swarm and ml_metronome.
_NAMESPACE_FIELD: dict[str, Any] = {
    "label": "Installation namespace",
    "schema": {"type": ["string", "null"]},
    "description": (
        "1-20 characters a-z, 0-9, '-'. Names and labels this Airflow's jobs, so installations sharing an "
        "engine never touch each other's. Empty: the Airflow Variable ml_provider_namespace (made on first use)."
    ),
}

_DOCKER_TLS_FIELDS: dict[str, Any] = {
    "tls_ca": {
        "label": "TLS CA certificate path",
        "schema": {"type": ["string", "null"]},
        "description": "Absolute path, on the workers, of the CA certificate that signed the engine's. "
        "Empty: the system's CAs.",
    },
    "tls_cert": {
        "label": "TLS client certificate path",
        "schema": {"type": ["string", "null"]},
        "description": "Absolute path, on the workers, of the client certificate the engine requires (with the key).",
    },
    "tls_key": {
        "label": "TLS client key path",
        "schema": {"type": ["string", "null"]},
        "description": "Absolute path, on the workers, of the client certificate's private key.",
    },
    "tls_verify": {
        "label": "Verify the engine's TLS certificate",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Off skips only the certificate check (the traffic stays encrypted). Empty: on.",
    },
    "timeout": {
        "label": "API timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 60},
        "description": "Per request to the engine's API. Empty: 60.",
    },
    "stop_timeout": {
        "label": "Stop grace period (seconds)",
        "schema": {"type": ["integer", "null"], "default": 10},
        "description": "SIGTERM, then SIGKILL after this many seconds when a job is cancelled. Empty: 10.",
    },
    "pull": {
        "label": "Image pull policy",
        "schema": {"type": ["string", "null"], "enum": ["missing", "always", "never"], "default": "missing"},
        "description": "missing: pull only images the engine does not have; always: pull before every job; "
        "never: use local images only. Empty: missing.",
    },
    "namespace": _NAMESPACE_FIELD,
}

DOCKER_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "password", "port"],
    "relabeling": {"host": "Docker engine URL"},
    "placeholders": {"host": "unix:///var/run/docker.sock  or  tcp://docker-host:2376"},
}

SWARM_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "password", "port"],
    "relabeling": {"host": "Swarm manager engine URL"},
    "placeholders": {"host": "unix:///var/run/docker.sock  or  tcp://swarm-manager:2376"},
}

METRONOME_CONN_FIELDS: dict[str, Any] = {
    "token": {
        "label": "IAM token (instead of a password)",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": "A pre-issued DC/OS IAM token, sent as is; then IAM uid and password are not needed.",
    },
    "verify": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Off only for testing: DC/OS's certificate is then not checked. Empty: on.",
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Absolute path, on the workers, of the PEM file of the CA that signed DC/OS's certificate. "
        "Empty: the system's CAs.",
    },
    "timeout": {
        "label": "HTTP timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30},
        "description": "Per request to Metronome. Empty: 30.",
    },
    "retries": {
        "label": "Retries on 5xx / connection errors",
        "schema": {"type": ["integer", "null"], "default": 5},
        "description": "Connection errors are retried for every request, 5xx answers and timeouts only for "
        "requests that are safe to repeat (a run is never started twice). Empty: 5.",
    },
    "backoff": {
        "label": "First retry delay (seconds)",
        "schema": {"type": ["number", "null"], "default": 0.5},
        "description": "Doubles with each retry. Empty: 0.5.",
    },
    "namespace": _NAMESPACE_FIELD,
}

METRONOME_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "DC/OS URL", "login": "IAM uid", "password": "IAM password"},
    "placeholders": {"host": "https://dcos.example.com", "login": "airflow-service"},
}


MLFLOW_CONN_FIELDS: dict[str, Any] = {
    "registry_uri": {
        "label": "Registry URI",
        "schema": {"type": ["string", "null"]},
        "description": "A separate model registry; empty: the tracking URI.",
    },
    "auth": {
        "label": "Authentication",
        "schema": {"type": ["string", "null"], "enum": ["none", "basic", "token"]},
        "description": "basic (login/password), token (bearer token in Password) or none.",
    },
    "verify": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Off only for testing: the tracking server's certificate is then not checked. Empty: on.",
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Absolute path, on the workers, of the PEM file of the CA that signed the tracking "
        "server's certificate. Empty: the system's CAs.",
    },
    "timeout": {
        "label": "HTTP timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 60},
        "description": "Per request to the tracking server and registry. Empty: 60.",
    },
    "max_retries": {
        "label": "HTTP retries",
        "schema": {"type": ["integer", "null"], "default": 5},
        "description": "Retries of a failed request (MLflow backs off between them); 0 turns them off. Empty: 5.",
    },
}

MLFLOW_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema"],
    "relabeling": {
        "host": "Tracking URI",
        "port": "Port (added to an http(s) URI without one)",
        "login": "User (basic auth)",
        "password": "Password or token",
    },
    "placeholders": {"host": "https://mlflow.corp  or  sqlite:////srv/mlflow/mlflow.db"},
}


WEBHOOK_CONN_FIELDS: dict[str, Any] = {
    "verify": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Off only for testing: the receiver's certificate is then not checked. Empty: on.",
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "Absolute path, on the workers, of the PEM file of the CA that signed the receiver's "
        "certificate. Empty: the system's CAs.",
    },
    "timeout": {
        "label": "HTTP timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 10},
        "description": "Connect and read timeout of each attempt. Empty: 10.",
    },
    "retries": {
        "label": "Retries on 429/5xx / connection errors",
        "schema": {"type": ["integer", "null"], "default": 3},
        "description": "A retried alert may arrive twice; each carries an Idempotency-Key header. Empty: 3.",
    },
    "backoff": {
        "label": "First retry delay (seconds)",
        "schema": {"type": ["number", "null"], "default": 0.5},
        "description": "Doubles with each retry. Empty: 0.5.",
    },
}

WEBHOOK_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port"],
    "relabeling": {"host": "Webhook URL", "password": "Bearer token (optional)"},
    "placeholders": {"host": "https://alerts.example.com/hooks/ml"},
}

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
                ],
            },
        ],
        "sensors": [{"integration-name": "HDFS (WebHDFS)", "python-modules": ["airflow_ml_provider.sensors.hdfs"]}],
        "triggers": [
            {"integration-name": "HDFS (WebHDFS)", "python-modules": ["airflow_ml_provider.triggers.hdfs"]},
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
                "conn-fields": _DOCKER_TLS_FIELDS,
                "ui-field-behaviour": DOCKER_UI_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": "airflow_ml_provider.hooks.container.SwarmJobHook",
                "hook-name": hook_name("Docker Swarm"),
                "connection-type": "ml_swarm",
                "conn-fields": _DOCKER_TLS_FIELDS,
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

"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Everything is data: the UI draws connection forms from ``conn-fields`` and
``ui-field-behaviour`` without importing hook code.
"""

from __future__ import annotations

from typing import Any

from airflow_ml_provider import __version__

PACKAGE = "airflow-ml-provider"

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
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "schema": {"type": ["string", "null"]},
        "description": "PEM file of the CA that signed the NameNodes' certificates.",
    },
    "timeout": {
        "label": "HTTP timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30},
        "description": "Per request; a NameNode slower than this is treated as down and the next one is tried.",
    },
    "proxy_user": {
        "label": "Proxy user (doas)",
        "schema": {"type": ["string", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata: hooks, sensors, triggers and connection types."""
    return {
        "package-name": PACKAGE,
        "name": "ML pipelines (airflow-ml-provider)",
        "description": "Operationalize ML pipelines: HDFS marker sensor, container jobs, Spark, MLflow, ERP writer.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "HDFS (WebHDFS)",
                "external-doc-url": "https://hadoop.apache.org/docs/stable/hadoop-project-dist/hadoop-hdfs/WebHDFS.html",
                "tags": ["apache"],
            }
        ],
        "hooks": [
            {
                "integration-name": "HDFS (WebHDFS)",
                "python-modules": [
                    "airflow_ml_provider.hooks.webhdfs",
                    "airflow_ml_provider.hooks.storage",
                ],
            }
        ],
        "sensors": [{"integration-name": "HDFS (WebHDFS)", "python-modules": ["airflow_ml_provider.sensors.hdfs"]}],
        "triggers": [{"integration-name": "HDFS (WebHDFS)", "python-modules": ["airflow_ml_provider.triggers.hdfs"]}],
        "connection-types": [
            {
                "hook-class-name": "airflow_ml_provider.hooks.webhdfs.HdfsHook",
                "hook-name": "HDFS (WebHDFS, airflow-ml-provider)",
                "connection-type": "ml_hdfs",
                "conn-fields": HDFS_CONN_FIELDS,
                "ui-field-behaviour": HDFS_UI_FIELD_BEHAVIOUR,
            }
        ],
    }

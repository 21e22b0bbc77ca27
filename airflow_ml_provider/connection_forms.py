"""The connection forms of the provider's connection types: their extra fields and field behaviour.

Data only, read by :func:`airflow_ml_provider.provider_info.get_provider_info` (the UI draws the
forms from it without importing hook code). Every extra field has a label and a description; a
cleared field is saved as null, which every hook reads as the field's default.
"""

from __future__ import annotations

from typing import Any

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

DOCKER_TLS_FIELDS: dict[str, Any] = {
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

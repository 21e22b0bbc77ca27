"""The hostname Airflow records for a compose-stack component: a Celery worker's node name.

The stack runs with host networking, so every container has the host's hostname and task instances
run by two Celery workers would all show the same ``hostname``. ``[core] hostname_callable`` points
here (``stack_hostname.hostname``, importable through a ``.pth`` file of the Airflow image); each
worker exports its Celery node name (``worker-<random>@<host>``) as ``STACK_NODE_NAME`` before it
starts, so the UI and the REST API tell the workers apart. Elsewhere: Airflow's default, the FQDN.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``STACK_NODE_NAME`` when set (a Celery worker of the stack), else the machine's FQDN."""
    return os.environ.get("STACK_NODE_NAME") or socket.getfqdn()

"""The provider's extras at run time: import what an extra installs, or fail naming the extra.

Every heavy optional library (``hdfs``, ``docker``, ``mlflow``, ``pyspark``, ``pandas``,
``pyarrow``) is imported inside the function that needs it, so DAG files import without it. On a
machine without the extra, such an import would raise a bare ``ModuleNotFoundError``, which Airflow
retries like an outage. Every such import goes through :func:`requires_extra` instead::

    with requires_extra("hdfs"):
        from hdfs import InsecureClient, TokenClient

which raises :class:`~airflow_ml_provider.exceptions.MissingExtraError` (the task fails at once,
without retries) naming the module and the command that installs it:
``pip install "airflow-ml-provider[hdfs]"``. Keep only import statements in the block: any
``ImportError`` in it is reported as the extra missing.

The Airflow CLI prints a failed ``airflow connections test`` message as rich markup, where
``[hdfs]`` is taken for a style tag and vanishes; the hooks pass their ``test_connection``
messages through :func:`connection_test_text`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from airflow_ml_provider.exceptions import MissingExtraError

PACKAGE = "airflow-ml-provider"

#: Each extra (``pyproject.toml``) and what needs it, for messages. pandas and pyarrow come with ``mlflow``.
EXTRAS: dict[str, str] = {
    "hdfs": "HDFS access (ml_hdfs connections, the HDFS sensor, hdfs:// paths)",
    "kerberos": "Kerberos authentication to HDFS",
    "docker": "Docker and Docker Swarm (container jobs, model endpoints)",
    "mlflow": "MLflow (register, promote, deploy, batch prediction)",
    "spark": "Spark (batch prediction with engine='spark', SparkTrainOperator's spark-submit)",
    "smtp": "E-mail failure alerts (the smtp provider's notifier)",
    "postgres": "Writing predictions to a PostgreSQL ERP database (the postgres provider's hook, psycopg2)",
    "mysql": "Writing predictions to a MariaDB/MySQL ERP database (the mysql provider's hook)",
    "sqlite": "Writing predictions to a SQLite ERP database (the sqlite provider's hook)",
}

#: The module of ``airflow connections test``; loaded only in the CLI process that runs it.
_CLI_COMMAND_MODULE = "airflow.cli.commands.connection_command"


def install_command(extra: str) -> str:
    """``pip install "airflow-ml-provider[<extra>]"``."""
    return f'pip install "{PACKAGE}[{extra}]"'


def missing_extra_error(extra: str, error: ImportError) -> MissingExtraError:
    """The error for ``error`` raised while importing a module that ``extra`` installs."""
    module = error.name or str(error)
    if isinstance(error, ModuleNotFoundError):
        problem = f"needs the Python module {module!r}, which is not installed on this machine"
    else:  # installed, but not importable (too old a version, a broken install)
        problem = f"could not import the Python module {module!r} ({str(error).strip().rstrip('.')})"
    return MissingExtraError(  # the command on a line of its own: a terminal 80 columns wide does not break it
        f"{EXTRAS[extra]} {problem}.\nInstall the provider's extra: {install_command(extra)}",
        module=module,
        extra=extra,
    )


@contextlib.contextmanager
def requires_extra(extra: str) -> Iterator[None]:
    """Run the import statements in the block; an ``ImportError`` becomes a :class:`MissingExtraError`.

    :param extra: the extra that installs the imported modules: one of :data:`EXTRAS`.
    :raises MissingExtraError: an import in the block failed; the message names the module and
        ``pip install "airflow-ml-provider[<extra>]"``. Permanent: the task fails without retries.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; use one of {', '.join(EXTRAS)}")
    try:
        yield
    except ImportError as e:
        raise missing_extra_error(extra, e) from e


def connection_test_text(message: str) -> str:
    """``message`` as a hook's ``test_connection`` should return it.

    ``airflow connections test`` prints a failure's message as rich markup, so there square
    brackets that look like a tag (``[hdfs]``) are escaped (``\\[hdfs]``) and shown as written.
    The UI shows the same message as plain text, so it is escaped only in the CLI process.
    """
    if _CLI_COMMAND_MODULE not in sys.modules:
        return message
    try:
        from rich.markup import escape
    except ImportError:  # no rich: nothing renders markup; escape anyway, the CLI's own way
        return message.replace("[", "\\[")
    return escape(message)

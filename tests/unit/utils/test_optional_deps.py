"""The one helper for the provider's optional imports, and connection-test messages the CLI shows intact."""

from __future__ import annotations

import sys
import types

import pytest

from airflow_ml_provider.exceptions import MissingExtraError, PermanentError
from airflow_ml_provider.utils.optional_deps import EXTRAS, connection_test_text, install_command, requires_extra

CLI_MODULE = "airflow.cli.commands.connection_command"


def test_every_extra_of_pyproject_that_carries_a_library_is_known() -> None:
    import tomllib

    from tests.conftest import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    assert set(extras) - set(EXTRAS) == {"metronome", "all", "dev"}  # no import of their own to guard


def test_a_missing_module_becomes_a_permanent_error_naming_module_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hdfs", None)
    with pytest.raises(MissingExtraError) as info, requires_extra("hdfs"):
        import hdfs  # noqa: F401
    error = info.value
    assert isinstance(error, PermanentError)
    assert error.retryable is False
    assert (error.module, error.extra) == ("hdfs", "hdfs")
    assert str(error) == (
        "HDFS access (ml_hdfs connections, the HDFS sensor, hdfs:// paths) needs the Python module 'hdfs', "
        "which is not installed on this machine.\nInstall the provider's extra: "
        'pip install "airflow-ml-provider[hdfs]"'
    )
    assert isinstance(error.__cause__, ModuleNotFoundError)


def test_an_installed_but_broken_module_says_why() -> None:
    with pytest.raises(MissingExtraError) as info, requires_extra("docker"):
        raise ImportError("cannot import name 'DeviceRequest' from 'docker.types'", name="docker.types")
    assert "could not import the Python module 'docker.types' (cannot import name 'DeviceRequest'" in str(info.value)
    assert str(info.value).endswith('pip install "airflow-ml-provider[docker]"')


def test_other_errors_and_unknown_extras_pass_through() -> None:
    with pytest.raises(KeyError), requires_extra("mlflow"):
        raise KeyError("not an import problem")
    with pytest.raises(ValueError, match="unknown extra 'dokcer'"), requires_extra("dokcer"):
        pass
    assert install_command("spark") == 'pip install "airflow-ml-provider[spark]"'


def test_connection_test_text_is_escaped_only_for_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    message = 'pip install "airflow-ml-provider[hdfs]" ([Errno 111] Connection refused)'
    monkeypatch.delitem(sys.modules, CLI_MODULE, raising=False)
    assert connection_test_text(message) == message  # the UI shows it as plain text
    monkeypatch.setitem(sys.modules, CLI_MODULE, types.ModuleType(CLI_MODULE))
    escaped = 'pip install "airflow-ml-provider\\[hdfs]"'
    assert connection_test_text(message) == f"{escaped} ([Errno 111] Connection refused)"
    monkeypatch.setitem(sys.modules, "rich.markup", None)  # no rich: escape every bracket
    assert connection_test_text(message) == f"{escaped} (\\[Errno 111] Connection refused)"

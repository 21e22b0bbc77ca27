"""Container hooks: strict connection parsing per backend (TLS stays on), default connection ids,
missing connections, secret references and their resolution, the installation namespace."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_ml_provider.backends.docker_common import docker_tls
from airflow_ml_provider.backends.docker_engine import DockerBackend
from airflow_ml_provider.backends.metronome import MetronomeBackend
from airflow_ml_provider.backends.swarm import SwarmBackend
from airflow_ml_provider.exceptions import ConnectionConfigError, InvalidSpecError
from airflow_ml_provider.hooks.container import (
    ContainerJobHook,
    MetronomeJobHook,
    SwarmJobHook,
    backend_from_connection,
    docker_config_from_connection,
    metronome_config_from_connection,
    new_namespace,
)
from airflow_ml_provider.utils.secret_refs import SecretRef, parse_secret_env

SECRET = "pw-" + "x" * 12


def conn(conn_type: str, **kw: Any) -> Connection:
    extra = kw.pop("extra", None)
    return Connection(conn_id="c", conn_type=conn_type, extra=json.dumps(extra) if extra else None, **kw)


def test_docker_config_defaults_to_the_local_socket() -> None:
    config = docker_config_from_connection(conn("ml_docker"))
    assert config.base_url == "unix:///var/run/docker.sock"
    assert config.tls_verify is True
    assert config.pull == "missing"


def test_docker_config_from_host_port_and_extras(ca_file: str) -> None:
    config = docker_config_from_connection(
        conn("ml_docker", host="docker1.corp", port=2376, extra={"tls_ca": ca_file, "timeout": 5, "pull": "never"})
    )
    assert config.base_url == "tcp://docker1.corp:2376"
    assert config.tls_ca == ca_file
    assert config.timeout == 5
    assert config.pull == "never"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"pull": "sometimes"}, "pull"), ({"timeout": "soon"}, "timeout"), ({"stop_timeout": -1}, "stop_timeout")],
)
def test_bad_docker_extras_name_the_field(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConnectionConfigError, match=needle):
        docker_config_from_connection(conn("ml_docker", extra=extra))


def test_metronome_config_needs_credentials_and_keeps_tls_on(tmp_path: Path) -> None:
    with pytest.raises(ConnectionConfigError, match="login"):
        metronome_config_from_connection(conn("ml_metronome", host="https://dcos.corp"))
    config = metronome_config_from_connection(
        conn("ml_metronome", host="https://dcos.corp/service/metronome", login="svc", password=SECRET)
    )
    assert config.verify is True
    assert config.url == "https://dcos.corp/service/metronome"
    assert SECRET not in repr(config)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    bundle = metronome_config_from_connection(
        conn("ml_metronome", host="dcos.corp", extra={"token": "t0k", "ca_bundle": str(ca)})
    )
    assert bundle.verify == str(ca)
    assert bundle.url == "https://dcos.corp"


def test_the_connection_type_selects_the_backend() -> None:
    assert isinstance(backend_from_connection(conn("ml_docker")), DockerBackend)
    assert isinstance(backend_from_connection(conn("ml_swarm")), SwarmBackend)
    metronome = conn("ml_metronome", host="https://m", login="u", password=SECRET)
    assert isinstance(backend_from_connection(metronome), MetronomeBackend)
    with pytest.raises(ConnectionConfigError, match="ml_docker, ml_swarm, ml_metronome"):
        backend_from_connection(conn("docker"))


def test_secret_refs_parse_and_print_back() -> None:
    refs = parse_secret_env({"A": "conn://erp/password", "B": "conn://erp/extra/api_key", "C": "var://tok"})
    assert refs == {
        "A": SecretRef("conn", "erp", "password"),
        "B": SecretRef("conn", "erp", "extra/api_key"),
        "C": SecretRef("var", "tok"),
    }
    assert [str(r) for r in refs.values()] == ["conn://erp/password", "conn://erp/extra/api_key", "var://tok"]


@pytest.mark.parametrize("value", ["conn://erp", "conn://erp/secret", "var://", "var://a/b", "plain", 42, None])
def test_bad_secret_refs_are_refused(value: Any) -> None:
    with pytest.raises(InvalidSpecError, match="secret_env"):
        parse_secret_env({"A": value})


def test_resolve_reads_connections_and_variables_and_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ERP_DB",
        json.dumps({"conn_type": "postgres", "host": "erp", "login": "w", "password": SECRET, "extra": {"k": "ex-1"}}),
    )
    monkeypatch.setenv("AIRFLOW_VAR_PRICING_TOKEN", "var-secret-1")
    masked: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value, name=None: masked.append(value))
    refs = parse_secret_env({"P": "conn://erp_db/password", "K": "conn://erp_db/extra/k", "T": "var://pricing_token"})
    values = ContainerJobHook().resolve_secret_env(refs)
    assert values == {"P": SECRET, "K": "ex-1", "T": "var-secret-1"}
    assert set(values.values()) <= {m for m in masked if isinstance(m, str)}


def test_resolve_errors_name_the_reference_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ERP_DB", json.dumps({"conn_type": "postgres", "password": SECRET}))
    hook = ContainerJobHook()
    with pytest.raises(ConnectionConfigError, match="conn://missing_db/password"):
        hook.resolve_secret_env(parse_secret_env({"P": "conn://missing_db/password"}))
    with pytest.raises(ConnectionConfigError, match="no extra key") as err:
        hook.resolve_secret_env(parse_secret_env({"P": "conn://erp_db/extra/nope"}))
    assert SECRET not in str(err.value)
    with pytest.raises(ConnectionConfigError, match="is empty"):
        hook.resolve_secret_env(parse_secret_env({"P": "conn://erp_db/login"}))


# -- strict extras: a typo never turns TLS verification off ----------------------------------------


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "corp-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


@pytest.mark.parametrize("value", ["ture", "yes please", "2", "verify", "/no/such/ca.pem"])
def test_a_typo_in_docker_tls_verify_is_an_error_naming_connection_key_and_values(value: str) -> None:
    with pytest.raises(ConnectionConfigError) as err:
        docker_config_from_connection(conn("ml_docker", host="tcp://d:2376", extra={"tls_verify": value}))
    text = str(err.value)
    assert "'c'" in text
    assert "tls_verify" in text
    assert "true/false" in text or "does not exist" in text


@pytest.mark.parametrize("value", ["ture", "0n", "/no/such/corp-ca.pem", "corp-ca.pem"])
def test_a_typo_in_metronome_verify_is_an_error(value: str) -> None:
    with pytest.raises(ConnectionConfigError, match=r"'c'.*'verify'"):
        metronome_config_from_connection(
            conn("ml_metronome", host="https://m", login="u", password=SECRET, extra={"verify": value})
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), (True, True), ("true", True), ("on", True), (False, False), ("no", False)],
)
def test_verify_spellings_and_null_mean_the_default(value: Any, expected: bool) -> None:
    metronome = metronome_config_from_connection(
        conn("ml_metronome", host="https://m", login="u", password=SECRET, extra={"verify": value, "timeout": None})
    )
    assert metronome.verify is expected
    assert metronome.timeout == 30
    docker = docker_config_from_connection(conn("ml_docker", host="tcp://d:2376", extra={"tls_verify": value}))
    assert docker.tls_verify is expected


def test_metronome_verify_as_a_path_means_verify_with_this_ca(ca_file: str) -> None:
    config = metronome_config_from_connection(
        conn("ml_metronome", host="https://m", login="u", password=SECRET, extra={"verify": ca_file})
    )
    assert config.verify == ca_file
    same = metronome_config_from_connection(
        conn(
            "ml_metronome",
            host="https://m",
            login="u",
            password=SECRET,
            extra={"verify": ca_file, "ca_bundle": ca_file},
        )
    )
    assert same.verify == ca_file
    with pytest.raises(ConnectionConfigError, match="ca_bundle"):
        metronome_config_from_connection(
            conn("ml_metronome", host="https://m", login="u", password=SECRET, extra={"ca_bundle": "true"})
        )
    off = metronome_config_from_connection(
        conn(
            "ml_metronome", host="https://m", login="u", password=SECRET, extra={"verify": False, "ca_bundle": ca_file}
        )
    )
    assert off.verify is False  # only an explicit false turns it off


def test_docker_tls_verify_as_a_path_verifies_against_that_ca(ca_file: str) -> None:
    config = docker_config_from_connection(conn("ml_docker", host="tcp://d:2376", extra={"tls_verify": ca_file}))
    assert (config.tls_ca, config.tls_verify) == (ca_file, True)
    tls = docker_tls(config)
    assert (tls.ca_cert, tls.verify) == (ca_file, True)

    class Session:
        verify: Any = None
        cert: Any = None

    session = Session()
    tls.configure_client(session)
    assert session.verify == ca_file  # what the SDK's requests session verifies against
    other = Path(ca_file).with_name("other-ca.pem")
    other.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConnectionConfigError, match="different CA files"):
        docker_config_from_connection(
            conn("ml_docker", host="tcp://d:2376", extra={"tls_verify": ca_file, "tls_ca": str(other)})
        )
    with pytest.raises(ConnectionConfigError, match="does not exist"):
        docker_config_from_connection(conn("ml_docker", host="tcp://d:2376", extra={"tls_ca": "/no/such/ca.pem"}))


def test_docker_tls_stays_verified_unless_turned_off(ca_file: str) -> None:
    assert docker_tls(docker_config_from_connection(conn("ml_docker"))) is False  # the local socket: no TLS
    with_ca = docker_tls(
        docker_config_from_connection(conn("ml_docker", host="tcp://d:2376", extra={"tls_ca": ca_file}))
    )
    assert (with_ca.ca_cert, with_ca.verify) == (ca_file, True)
    https = docker_tls(docker_config_from_connection(conn("ml_docker", host="https://d:2376")))
    assert https.verify is True
    off = docker_tls(
        docker_config_from_connection(
            conn("ml_docker", host="tcp://d:2376", extra={"tls_ca": ca_file, "tls_verify": "false"})
        )
    )
    assert off.verify is False


def test_a_tcp_engine_without_tls_files_still_gets_verified_tls() -> None:
    """Issue 9 item 11: no tls_ca/tls_cert used to mean plain HTTP to port 2376."""
    for host in ("tcp://d:2376", "d"):
        config = docker_config_from_connection(conn("ml_docker", host=host))
        tls = docker_tls(config)
        assert (tls.ca_cert, tls.cert, tls.verify) == (None, None, True)  # verify=True: the system CAs
    unverified = docker_tls(docker_config_from_connection(conn("ml_docker", host="d", extra={"tls_verify": False})))
    assert unverified.verify is False  # tls_verify=false skips the check, it does not turn TLS off


@pytest.mark.parametrize(
    ("host", "extra"), [("tcp://d:2375", {"tls": False}), ("d", {"tls": "false"}), ("http://d:2375", {})]
)
def test_plain_http_only_when_the_connection_says_so(host: str, extra: dict[str, Any]) -> None:
    config = docker_config_from_connection(conn("ml_docker", host=host, extra=extra))
    assert docker_tls(config) is False
    assert config.uses_tls() is False


@pytest.mark.parametrize(
    ("host", "extra", "needle"),
    [
        ("tcp://d:2376", {"tls": "nope"}, "'tls'"),
        ("tcp://d:2376", {"tls": False, "tls_ca": "CA"}, "tls=false"),
        ("https://d:2376", {"tls": False}, "tls=false"),
        ("http://d:2375", {"tls": True}, "http://"),
    ],
)
def test_contradictory_tls_settings_are_refused(host: str, extra: dict[str, Any], needle: str, ca_file: str) -> None:
    extra = {k: (ca_file if v == "CA" else v) for k, v in extra.items()}
    with pytest.raises(ConnectionConfigError, match=needle):
        docker_config_from_connection(conn("ml_docker", host=host, extra=extra))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"timeout": 0}, "timeout"),
        ({"retries": "many"}, "retries"),
        ({"backoff": -1}, "backoff"),
        ({"timeout": True}, "timeout"),
    ],
)
def test_bad_metronome_numbers_name_the_field(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConnectionConfigError, match=needle):
        metronome_config_from_connection(
            conn("ml_metronome", host="https://m", login="u", password=SECRET, extra=extra)
        )


# -- default connection ids and missing connections --------------------------------------------------


def test_each_hook_defaults_to_its_own_connection() -> None:
    assert ContainerJobHook().conn_id == ContainerJobHook.default_conn_name == "ml_docker_default"
    assert SwarmJobHook().conn_id == SwarmJobHook.default_conn_name == "ml_swarm_default"
    assert MetronomeJobHook().conn_id == MetronomeJobHook.default_conn_name == "ml_metronome_default"
    assert SwarmJobHook(conn_id="swarm_prod").conn_id == "swarm_prod"


def test_a_missing_docker_default_means_the_local_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ML_DOCKER_DEFAULT", raising=False)
    hook = ContainerJobHook()
    for found in (hook.get_conn(), asyncio.run(hook.aget_conn())):
        assert (found.conn_id, found.conn_type) == ("ml_docker_default", "ml_docker")
    assert isinstance(hook.get_backend(), DockerBackend)


def test_a_defined_default_connection_wins_over_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ML_DOCKER_DEFAULT", json.dumps({"conn_type": "ml_swarm", "host": "tcp://m:2376"}))
    assert isinstance(ContainerJobHook().get_backend(), SwarmBackend)


@pytest.mark.parametrize("hook_class", [SwarmJobHook, MetronomeJobHook])
def test_other_missing_connections_are_config_errors_naming_them(
    hook_class: type[ContainerJobHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(f"AIRFLOW_CONN_{hook_class.default_conn_name.upper()}", raising=False)
    hook = hook_class()
    with pytest.raises(ConnectionConfigError, match=f"{hook_class.default_conn_name}.*not defined"):
        hook.get_conn()
    with pytest.raises(ConnectionConfigError, match=f"{hook_class.default_conn_name}.*not defined"):
        asyncio.run(hook.aget_conn())


def test_only_airflows_not_found_exception_means_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that merely says "isn't defined" is not mistaken for a missing connection."""
    hook = ContainerJobHook()

    def broken(conn_id: str) -> Any:
        raise RuntimeError(f"The conn_id `{conn_id}` isn't defined (the secrets backend is down)")

    monkeypatch.setattr(hook, "get_connection", broken)
    with pytest.raises(RuntimeError, match="secrets backend is down"):
        hook.get_conn()

    def not_found(conn_id: str) -> Any:
        raise AirflowNotFoundException("gone")  # Airflow's type, whatever the words

    monkeypatch.setattr(hook, "get_connection", not_found)
    assert hook.get_conn().conn_type == "ml_docker"


# -- the installation namespace --------------------------------------------------------------------


class FakeVariables:
    """Airflow's Variable store as the hook sees it: ``get`` with a default, ``set`` with a description."""

    def __init__(self, stored: dict[str, Any] | None = None, *, racer: str | None = None) -> None:
        self.stored = dict(stored or {})
        self.calls: list[tuple[str, ...]] = []
        self.descriptions: dict[str, str | None] = {}
        self.racer = racer  # another task's value that lands right after ours

    def get(self, key: str, default: Any = None) -> Any:
        self.calls.append(("get", key))
        return self.stored.get(key, default)

    def set(self, key: str, value: Any, description: str | None = None) -> None:
        self.calls.append(("set", key, value))
        self.stored[key] = value
        self.descriptions[key] = description
        if self.racer is not None:
            self.stored[key] = self.racer


@pytest.fixture
def variables(monkeypatch: pytest.MonkeyPatch) -> FakeVariables:
    """The Variable boundary faked, inside a task runtime (where Variables can be written)."""
    import airflow.sdk

    fake = FakeVariables()
    monkeypatch.setattr(airflow.sdk, "Variable", fake)
    monkeypatch.setattr("airflow_ml_provider.hooks.container._in_task_runtime", lambda: True)
    return fake


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn_type: str, extra: dict[str, Any]) -> None:
    body: dict[str, Any] = {"conn_type": conn_type, "extra": extra}
    if conn_type == "ml_metronome":
        body.update(host="https://dcos.corp", login="svc", password=SECRET)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


@pytest.mark.parametrize(
    ("hook_class", "conn_type"),
    [(ContainerJobHook, "ml_docker"), (SwarmJobHook, "ml_swarm"), (MetronomeJobHook, "ml_metronome")],
)
def test_the_connection_extra_namespace_wins(
    hook_class: type[ContainerJobHook], conn_type: str, variables: FakeVariables, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, "engine", conn_type, {"namespace": "staging-eu"})
    variables.stored["ml_provider_namespace"] = "0badc0de"
    assert hook_class(conn_id="engine").job_namespace() == "staging-eu"
    assert variables.calls == []  # the Variable is not even read


@pytest.mark.parametrize("value", ["Staging", "-x", "a_b", "x" * 21, 7, True, ["a"], " staging"])
@pytest.mark.parametrize("conn_type", ["ml_docker", "ml_swarm", "ml_metronome"])
def test_a_bad_namespace_extra_names_the_connection_and_the_fix(
    value: Any, conn_type: str, variables: FakeVariables, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, "engine", conn_type, {"namespace": value})
    with pytest.raises(ConnectionConfigError) as err:
        ContainerJobHook(conn_id="engine").job_namespace()
    text = str(err.value)
    assert "Connection 'engine'" in text
    assert "extra 'namespace'" in text
    assert "1-20 characters of a-z, 0-9 and '-'" in text
    assert "ml_provider_namespace" in text
    assert variables.calls == []


@pytest.mark.parametrize("extra", [{}, {"namespace": None}, {"namespace": ""}])
def test_without_the_extra_an_existing_variable_is_used(
    extra: dict[str, Any], variables: FakeVariables, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, "engine", "ml_docker", extra)
    variables.stored["ml_provider_namespace"] = "0badc0de"
    assert ContainerJobHook(conn_id="engine").job_namespace() == "0badc0de"
    assert variables.calls == [("get", "ml_provider_namespace")]


def test_a_missing_variable_is_created_with_a_random_value_and_a_description(
    variables: FakeVariables, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ML_DOCKER_DEFAULT", raising=False)
    namespace = ContainerJobHook().job_namespace()
    assert re.fullmatch(r"[a-z][0-9a-f]{7}", namespace)
    assert variables.calls == [
        ("get", "ml_provider_namespace"),
        ("set", "ml_provider_namespace", namespace),
        ("get", "ml_provider_namespace"),
    ]
    description = variables.descriptions["ml_provider_namespace"] or ""
    assert "Installation namespace of airflow-ml-provider container jobs" in description
    assert "must differ" in description
    # the next task of this installation reads it back; another installation makes its own
    assert ContainerJobHook().job_namespace() == namespace
    assert variables.calls[-1] == ("get", "ml_provider_namespace")
    assert len(variables.calls) == 4


def test_two_first_tasks_racing_use_what_is_stored(variables: FakeVariables, monkeypatch: pytest.MonkeyPatch) -> None:
    """Get -> set -> get again: a task whose value was overwritten by a racing one takes the stored value."""
    monkeypatch.delenv("AIRFLOW_CONN_ML_DOCKER_DEFAULT", raising=False)
    variables.racer = "feedbeef"
    assert ContainerJobHook().job_namespace() == "feedbeef"


@pytest.mark.parametrize("value", ["", "Prod", "prod_1", "x" * 21])
def test_an_invalid_variable_is_an_error_naming_it_and_the_fix(
    value: str, variables: FakeVariables, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ML_DOCKER_DEFAULT", raising=False)
    variables.stored["ml_provider_namespace"] = value
    with pytest.raises(InvalidSpecError) as err:
        ContainerJobHook().job_namespace()
    text = str(err.value)
    assert "Airflow Variable ml_provider_namespace" in text
    assert repr(value) in text
    assert "delete it to have one generated" in text
    assert ("set", "ml_provider_namespace", value) not in variables.calls


def test_outside_an_airflow_task_the_namespace_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """``execute`` called directly (no task runtime): the Variable cannot be written; nothing is set."""
    import airflow.sdk

    from airflow_ml_provider.hooks.container import LOCAL_NAMESPACE, _in_task_runtime

    assert _in_task_runtime() is False  # the real check, in this test process
    fake = FakeVariables()
    monkeypatch.setattr(airflow.sdk, "Variable", fake)
    monkeypatch.delenv("AIRFLOW_CONN_ML_DOCKER_DEFAULT", raising=False)
    assert ContainerJobHook().job_namespace() == LOCAL_NAMESPACE == "local"
    assert fake.calls == [("get", "ml_provider_namespace")]


def test_a_generated_namespace_is_never_read_as_a_json_value() -> None:
    """Airflow's REST API parses a Variable's value as JSON before showing it: plain hex such as
    ``12e45678`` came back as ``Infinity`` (seen in CI). A letter first makes every value a string."""
    from airflow_ml_provider.backends.base import is_namespace

    for _ in range(2000):
        value = new_namespace()
        assert re.fullmatch(r"[a-z][0-9a-f]{7}", value)
        assert is_namespace(value)
        with pytest.raises(json.JSONDecodeError):
            json.loads(value)

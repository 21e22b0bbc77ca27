"""The compose stack's helper scripts: ``scripts/compose_env.py`` (writes ``.env``),
``scripts/images/airflow/stack_init.py`` (the ``airflow-init`` service) and
``scripts/images/stack_health.py`` (the services' health checks).

The boundary faked here is the stack itself: the health checks ask a real HTTP server on
127.0.0.1 that answers like the NameNode, the Spark master or Airflow's api-server would, and the
connections the init imports are parsed by Airflow's own importer and the provider's own
connection readers. Database calls and the Airflow CLI run for real in
tests/integration/test_compose_stack.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts import compose_env
from scripts.images import stack_health
from scripts.images.airflow import stack_hostname, stack_init
from scripts.testbed.canned_http import CannedHttpServer
from tests.conftest import ROOT

ENV_EXAMPLE = ROOT / ".env.example"
URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")
#: A valid environment of airflow-init.
INIT_ENV = {
    "STACK_HOST": "127.0.0.1",
    "POSTGRES_PORT": "15433",
    "MARIADB_PORT": "13307",
    "HDFS_HTTP_PORT": "19870",
    "HDFS_RPC_PORT": "18020",
    "MLFLOW_PORT": "15000",
    "SPARK_MASTER_PORT": "17077",
    "SOURCE_DB_PASSWORD": "src-Pw_1",
    "ERP_DB_PASSWORD": "erp-Pw_2",
    "AIRFLOW_ADMIN_PASSWORD": "admin pw with spaces & symbols!",
}


# -- compose_env --------------------------------------------------------------------------------


def test_fill_makes_every_empty_secret_and_keeps_the_comments() -> None:
    text = ENV_EXAMPLE.read_text()
    filled = compose_env.fill(text, {}, gid="999")
    values = dict(line.split("=", 1) for line in filled.splitlines() if re.match(r"^[A-Z][A-Z0-9_]*=", line))
    assert list(values) == compose_env.template_keys(text)  # same keys, same order
    for key in compose_env.SECRETS:
        assert values[key], key
        if key.endswith("_PASSWORD"):
            assert URL_SAFE.match(values[key]), key  # it goes into URLs unescaped
            assert len(values[key]) >= 24
    assert len(set(values[k] for k in compose_env.SECRETS)) == len(compose_env.SECRETS)  # all different
    assert base64.urlsafe_b64decode(values["AIRFLOW_FERNET_KEY"]).__len__() == 32
    assert values["DOCKER_GID"] == "999"
    assert values["AIRFLOW_PORT"] == "8080"  # non-secrets as the template has them
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert comments == [line for line in filled.splitlines() if line.startswith("#")]


def test_the_fernet_key_is_one_airflow_accepts() -> None:
    from cryptography.fernet import Fernet

    key = compose_env.SECRETS["AIRFLOW_FERNET_KEY"]()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"


def test_overrides_win_and_unknown_keys_are_appended() -> None:
    text = "# c\nA_PORT=1\nPOSTGRES_PASSWORD=\nKEEP=x\n"
    filled = compose_env.fill(text, {"A_PORT": "2", "POSTGRES_PASSWORD": "given", "NEW": "n"})
    assert filled == "# c\nA_PORT=2\nPOSTGRES_PASSWORD=given\nKEEP=x\nNEW=n\n"


def test_free_ports_are_distinct_and_can_be_bound_below_the_ephemeral_range() -> None:
    ports = compose_env.free_ports(12)
    assert len(set(ports)) == 12
    low, _ = compose_env.ephemeral_range()
    if low > 20000 + 100:
        assert all(20000 <= p < low for p in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_main_writes_a_private_file_and_never_replaces_one_unasked(tmp_path: Path) -> None:
    out = tmp_path / ".env"
    args = ["--template", str(ENV_EXAMPLE), "--output", str(out), "--free-ports", "--set", "DOCKER_GID=4242"]
    assert compose_env.main(args) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    first = out.read_text()
    values = dict(line.split("=", 1) for line in first.splitlines() if re.match(r"^[A-Z][A-Z0-9_]*=", line))
    assert values["DOCKER_GID"] == "4242"
    ports = [int(v) for k, v in values.items() if k.endswith("_PORT")]
    assert len(ports) == len(set(ports)) == 15
    endpoint = int(values["ML_PIPELINE_ENDPOINT_PORT"])
    assert endpoint + 1 not in ports  # the endpoint's router takes the next port for its control API
    assert compose_env.main(args) == 1  # exists: kept
    assert out.read_text() == first
    assert compose_env.main([*args, "--force"]) == 0
    assert out.read_text() != first  # new secrets


def test_a_malformed_set_is_refused_naming_it() -> None:
    with pytest.raises(SystemExit, match="lower=1"):
        compose_env.parse_sets(["lower=1"])
    with pytest.raises(SystemExit, match="NOEQUALS"):
        compose_env.parse_sets(["NOEQUALS"])


# -- stack_init ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SOURCE_DB_PASSWORD": ""}, "SOURCE_DB_PASSWORD is not set"),
        ({"ERP_DB_PASSWORD": "p@ss/word"}, "ERP_DB_PASSWORD may hold only"),
        ({"AIRFLOW_ADMIN_PASSWORD": ""}, "AIRFLOW_ADMIN_PASSWORD is not set"),
        ({"POSTGRES_PORT": "five"}, "POSTGRES_PORT='five' is not a whole number"),
        ({"STACK_SEED_ROWS": "-1"}, "STACK_SEED_ROWS=-1 must be at least 0"),
        ({"STACK_ERP_TABLE": "Predictions"}, "STACK_ERP_TABLE='Predictions'"),
        ({"STACK_POOLS": "spark"}, "STACK_POOLS entry 'spark'"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(change: dict[str, str], named: str) -> None:
    with pytest.raises(stack_init.StackInitError, match=re.escape(named)):
        stack_init.settings_from_env({**INIT_ENV, **change})


def test_the_connections_are_what_airflow_and_the_provider_read_them_as() -> None:
    from airflow.secrets.local_filesystem import _create_connection

    from airflow_ml_provider.hooks.mlflow import mlflow_config_from_connection
    from airflow_ml_provider.hooks.webhdfs import HdfsConfig
    from airflow_ml_provider.storage.spark_urls import SparkHdfs

    s = stack_init.settings_from_env(INIT_ENV)
    payload = json.loads(json.dumps(stack_init.connections(s)))  # as the file the CLI reads
    conns = {cid: _create_connection(cid, dict(value)) for cid, value in payload.items()}
    src = conns["ml_pipeline_source"]
    assert (src.conn_type, src.host, src.port, src.schema, src.login, src.password) == (
        "mysql", "127.0.0.1", 13307, "shop", "shop", "src-Pw_1",
    )  # fmt: skip
    erp = conns["ml_pipeline_erp"]
    assert (erp.conn_type, erp.port, erp.schema, erp.login, erp.password) == (
        "postgres",
        15433,
        "erp",
        "erp",
        "erp-Pw_2",
    )
    hdfs = HdfsConfig.from_connection(conns["ml_hdfs_default"])
    assert hdfs.namenodes == ("http://127.0.0.1:19870",)
    assert hdfs.user == "etl"
    assert SparkHdfs.from_connection(conns["ml_hdfs_default"]).rpc_ports == (18020,)
    assert mlflow_config_from_connection(conns["ml_mlflow_default"]).tracking_uri == "http://127.0.0.1:15000"
    spark = conns["spark_default"]
    assert (spark.conn_type, spark.host, spark.port) == ("spark", "spark://127.0.0.1", 17077)
    assert spark.extra_dejson == {"deploy-mode": "client"}


def test_the_pools_are_the_defaults_and_stack_pools_add_or_resize() -> None:
    s = stack_init.settings_from_env({**INIT_ENV, "STACK_POOLS": "ml_pipeline_spark=2, extra=5"})
    pools = stack_init.pools_json(s)
    assert {k: v["slots"] for k, v in pools.items()} == {
        "ml_pipeline_spark": 2, "markdown_pricing": 4, "markdown_pricing_erp": 2, "extra": 5,
    }  # fmt: skip
    assert all(v["include_deferred"] is False for v in pools.values())


def test_the_passwords_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    s = stack_init.settings_from_env({**INIT_ENV, "AIRFLOW_ADMIN_USER": "ops"})
    path = tmp_path / "auth" / "passwords.json"
    stack_init.write_passwords(s, path)
    stack_init.write_passwords(s, path)  # a second init run
    assert json.loads(path.read_text()) == {"ops": "admin pw with spaces & symbols!"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["passwords.json"]


def test_the_erp_ddl_comes_from_the_dags_folder(tmp_path: Path) -> None:
    assert stack_init.erp_table_ddl(tmp_path) is None  # no ml_pipeline.py
    (tmp_path / "ml_pipeline.py").write_text("X = 1\n")
    assert stack_init.erp_table_ddl(tmp_path) is None  # no ERP_TABLE_DDL
    (tmp_path / "ml_pipeline.py").write_text('ERP_TABLE_DDL = "CREATE TABLE {table} (a INT)"\n')
    assert stack_init.erp_table_ddl(tmp_path) == "CREATE TABLE {table} (a INT)"


def test_a_failing_step_is_named_with_its_output_redacted() -> None:
    s = stack_init.settings_from_env(INIT_ENV)
    code = "import sys; print('connecting with src-Pw_1'); sys.exit(3)"
    with pytest.raises(stack_init.StackInitError) as e:
        stack_init.run([sys.executable, "-c", code], "the step", s.secrets())
    assert str(e.value).startswith("the step failed (exit 3):")
    assert "connecting with ***" in str(e.value)
    assert "src-Pw_1" not in str(e.value)


def test_main_stops_before_any_step_when_the_environment_is_incomplete(capsys: pytest.CaptureFixture[str]) -> None:
    assert stack_init.main({"STACK_HOST": "127.0.0.1"}) == 1
    err = capsys.readouterr().err
    assert "stack-init: error: SOURCE_DB_PASSWORD is not set" in err
    assert "db migrate" not in err


def test_task_instances_record_the_workers_node_name_through_airflows_hostname_callable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.api.client import get_hostname

    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", "scripts.images.airflow.stack_hostname.hostname")
    monkeypatch.setenv("STACK_NODE_NAME", "worker-0a1b2c3d@host")
    assert get_hostname() == "worker-0a1b2c3d@host"
    monkeypatch.delenv("STACK_NODE_NAME")
    assert get_hostname() == socket.getfqdn() == stack_hostname.hostname()


# -- stack_health -------------------------------------------------------------------------------


def canned_json(body: Any, status: int = 200) -> CannedHttpServer:
    return CannedHttpServer((status, {"Content-Type": "application/json"}, json.dumps(body).encode()))


def test_airflow_check_wants_every_named_component_healthy(capsys: pytest.CaptureFixture[str]) -> None:
    health = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "unhealthy"}}
    with canned_json(health) as server:
        url = f"{server.url}/api/v2/monitor/health"
        assert stack_health.main(["airflow", url, "metadatabase"]) == 0
        assert stack_health.main(["airflow", url, "metadatabase", "scheduler", "triggerer"]) == 1
        assert server.requests[0] == ("GET", "/api/v2/monitor/health")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "healthy: metadatabase=healthy",
        "unhealthy: metadatabase=healthy, scheduler=unhealthy, triggerer=missing",
    ]


def test_hdfs_check_counts_the_namenodes_live_datanodes() -> None:
    jmx = {"beans": [{"name": "Hadoop:service=NameNode,name=FSNamesystemState", "NumLiveDataNodes": 1}]}
    with canned_json(jmx) as server:
        assert stack_health.main(["hdfs", server.url, "--datanodes", "1"]) == 0
        assert stack_health.main(["hdfs", server.url, "--datanodes", "2"]) == 1
        assert server.requests[0] == ("GET", "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState")


def test_spark_check_wants_an_alive_master_and_enough_alive_workers() -> None:
    status = {
        "status": "ALIVE",
        "workers": [
            {"state": "ALIVE", "cores": 2, "memory": 2048},
            {"state": "DEAD", "cores": 2, "memory": 2048},
            {"state": "ALIVE", "cores": 0, "memory": 0},
        ],
    }
    with canned_json(status) as server:
        assert stack_health.main(["spark", server.url, "--workers", "1"]) == 0
        assert stack_health.main(["spark", server.url, "--workers", "2"]) == 1
    with canned_json({"status": "STANDBY", "workers": []}) as server:
        assert stack_health.main(["spark", server.url]) == 1


def test_http_check_fails_on_an_error_status_and_on_no_answer(capsys: pytest.CaptureFixture[str]) -> None:
    with canned_json({}, status=503) as server:
        assert stack_health.main(["http", f"{server.url}/health"]) == 1
        url = server.url
    assert stack_health.main(["http", f"{url}/health"]) == 1  # the server is gone: refused
    out = capsys.readouterr().out
    assert "HTTP 503" in out
    assert "no answer" in out


def test_checks_ignore_any_proxy_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with canned_json({"status": "ALIVE", "workers": []}) as server:
        assert stack_health.main(["spark", server.url]) == 0
    assert os.environ["http_proxy"] == "http://127.0.0.1:9"


# --- scripts/testbed/compose_bed.py (the parts that need no engine) ------------------------------


def test_compose_runs_with_the_legacy_builder_and_debians_cli_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.testbed import compose_bed

    monkeypatch.setenv("PATH", "/usr/local/bin:/bin")
    env = compose_bed.compose_env()
    assert env["PATH"].split(":")[0] == "/usr/bin"
    assert env["DOCKER_BUILDKIT"] == "0"


def test_the_stack_reads_its_env_file_and_redacts_its_secrets(tmp_path: Path) -> None:
    from scripts.testbed import compose_bed

    env_file = tmp_path / ".env"
    assert compose_env.main(["--output", str(env_file), "--set", "AIRFLOW_PORT=18080"]) == 0
    stack = compose_bed.Stack(project="p", env_file=env_file, workdir=tmp_path, command=["true"])
    values = stack.values
    assert values["AIRFLOW_PORT"] == "18080"
    assert values["AIRFLOW_ADMIN_PASSWORD"]
    secrets = stack.secrets()
    assert {values[k] for k in compose_env.SECRETS} == set(secrets)
    text = f"url redis://:{values['REDIS_PASSWORD']}@host key {values['AIRFLOW_FERNET_KEY']}"
    assert stack.redact(text) == "url redis://:***@host key ***"
    api = stack.api()
    assert api.base_url == "http://127.0.0.1:18080"
    assert api.user == "admin"

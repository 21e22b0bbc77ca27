"""Strict connection extras: a value we cannot read is an error naming the fix, never "off"."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import Connection

from airflow_ml_provider.exceptions import ConnectionConfigError
from airflow_ml_provider.utils.conn_extras import connection_extra, extra_bool, extra_number, extra_verify


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("on", True), ("0", False), ("No", False), (1, True)])
def test_booleans_accept_the_usual_spellings(value: object, expected: bool) -> None:
    assert extra_bool({"k": value}, "k", not expected, conn_id="c") is expected


@pytest.mark.parametrize("value", ["ture", "2", "enabled", 7])
def test_a_boolean_typo_fails_naming_connection_key_and_accepted_values(value: object) -> None:
    with pytest.raises(ConnectionConfigError) as info:
        extra_bool({"tls_verify": value}, "tls_verify", True, conn_id="docker_prod")
    assert "'docker_prod'" in str(info.value)
    assert "'tls_verify'" in str(info.value)
    assert "true/false" in str(info.value)


def test_null_or_absent_means_the_default() -> None:
    assert extra_bool({"k": None}, "k", True, conn_id="c") is True
    assert extra_number({"t": None}, "t", 30.0, conn_id="c") == 30.0
    assert extra_verify({}, conn_id="c") is True


def test_verify_as_a_path_means_verify_with_that_ca(tmp_path: Path) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert extra_verify({"verify": str(ca)}, conn_id="c") == str(ca)
    assert extra_verify({"verify": "false"}, conn_id="c") is False
    with pytest.raises(ConnectionConfigError, match="does not exist"):
        extra_verify({"verify": str(tmp_path / "missing.pem")}, conn_id="c")
    with pytest.raises(ConnectionConfigError, match="CA bundle file"):
        extra_verify({"verify": "corp-ca.pem"}, conn_id="c")  # relative: neither a boolean nor a path


@pytest.mark.parametrize(("value", "fragment"), [("soon", "a number"), (-1, ">= 0"), (True, "a number")])
def test_numbers_are_checked(value: object, fragment: str) -> None:
    with pytest.raises(ConnectionConfigError, match=fragment):
        extra_number({"timeout": value}, "timeout", 30.0, conn_id="c")


def test_malformed_extra_json_is_an_error_not_silent_defaults() -> None:
    with pytest.raises(ConnectionConfigError, match="not valid JSON"):
        connection_extra(Connection(conn_id="c", conn_type="ml_docker", extra="{tls_verify: false"))
    with pytest.raises(ConnectionConfigError, match="JSON object"):
        connection_extra(Connection(conn_id="c", conn_type="ml_docker", extra="[1]"))
    assert connection_extra(Connection(conn_id="c", conn_type="ml_docker")) == {}


def test_verify_and_ca_bundle_combine_into_one_setting(tmp_path: Path) -> None:
    from airflow_ml_provider.utils.conn_extras import extra_tls_verify

    ca, other = tmp_path / "ca.pem", tmp_path / "other.pem"
    ca.write_text("x")
    other.write_text("x")
    assert extra_tls_verify({}, conn_id="c") is True
    assert extra_tls_verify({"ca_bundle": str(ca)}, conn_id="c") == str(ca)
    assert extra_tls_verify({"verify": str(ca), "ca_bundle": str(ca)}, conn_id="c") == str(ca)
    assert extra_tls_verify({"verify": "false", "ca_bundle": str(ca)}, conn_id="c") is False  # said explicitly
    assert extra_tls_verify(
        {"tls_verify": "on", "tls_ca": str(ca)}, conn_id="c", verify_key="tls_verify", ca_key="tls_ca"
    ) == str(ca)
    with pytest.raises(ConnectionConfigError, match="different CA files"):
        extra_tls_verify({"verify": str(ca), "ca_bundle": str(other)}, conn_id="c")
    with pytest.raises(ConnectionConfigError, match="does not exist"):
        extra_tls_verify({"ca_bundle": str(tmp_path / "gone.pem")}, conn_id="c")
    with pytest.raises(ConnectionConfigError, match="absolute path"):
        extra_tls_verify({"ca_bundle": True}, conn_id="c")

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


# -- a cleared form field (null, "" or blank) means the default, in every reader --------------------------


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_every_reader_takes_null_empty_or_blank_as_the_default(unset: object) -> None:
    from airflow_ml_provider.utils.conn_extras import extra_choice, extra_int, extra_str, extra_tls_verify, is_unset

    extra = {"k": unset}
    assert is_unset(unset)
    assert extra_bool(extra, "k", True, conn_id="c") is True
    assert extra_number(extra, "k", 30.0, conn_id="c", positive=True) == 30.0
    assert extra_int(extra, "k", 5, conn_id="c") == 5
    assert extra_str(extra, "k", "dflt", conn_id="c") == "dflt"
    assert extra_str(extra, "k", conn_id="c") is None
    assert extra_choice(extra, "k", ("missing", "always"), "missing", conn_id="c") == "missing"
    assert extra_verify({"verify": unset}, conn_id="c") is True  # TLS: the default is "verify"
    assert extra_tls_verify({"verify": unset, "ca_bundle": unset}, conn_id="c") is True
    assert not is_unset(0)
    assert not is_unset(False)


@pytest.mark.parametrize(
    ("reader", "value", "fragment"),
    [
        ("int", 2.5, "a whole number >= 0, e.g. 5"),
        ("int", "soon", "a number"),
        ("int", -1, ">= 0"),
        ("choice", "sometimes", "use 'missing', 'always' or 'never'"),
        ("choice", 3, "use 'missing', 'always' or 'never'"),
        ("str", 5, "must be text, not int"),
        ("str", True, "must be text, not bool"),
    ],
)
def test_a_value_that_is_there_but_unreadable_stays_an_error(reader: str, value: object, fragment: str) -> None:
    from airflow_ml_provider.utils.conn_extras import extra_choice, extra_int, extra_str

    read = {
        "int": lambda e: extra_int(e, "k", 5, conn_id="conn_a"),
        "choice": lambda e: extra_choice(e, "k", ("missing", "always", "never"), "missing", conn_id="conn_a"),
        "str": lambda e: extra_str(e, "k", conn_id="conn_a"),
    }[reader]
    with pytest.raises(ConnectionConfigError) as info:
        read({"k": value})
    assert "'conn_a'" in str(info.value)
    assert "'k'" in str(info.value)
    assert fragment in str(info.value)


def test_readers_accept_what_the_forms_and_the_cli_save() -> None:
    from airflow_ml_provider.utils.conn_extras import extra_choice, extra_int, extra_str

    assert extra_int({"k": "7"}, "k", 5, conn_id="c") == 7
    assert extra_int({"k": 3.0}, "k", 5, conn_id="c") == 3
    assert extra_choice({"k": " Always "}, "k", ("missing", "always"), "missing", conn_id="c") == "always"
    assert extra_str({"k": " etl "}, "k", conn_id="c") == "etl"


def test_a_secret_extra_is_never_echoed() -> None:
    from airflow_ml_provider.utils.conn_extras import extra_str

    with pytest.raises(ConnectionConfigError) as info:
        extra_str({"token": 123456789}, "token", conn_id="c")
    assert "123456789" not in str(info.value)

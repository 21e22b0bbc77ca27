"""Names that reach SQL text: validated, so a templated name cannot inject SQL."""

from __future__ import annotations

import pytest

from airflow_ml_provider.erp.identifiers import MAX_LENGTH, TableName, check_identifier, parse_table
from airflow_ml_provider.exceptions import InvalidSpecError


@pytest.mark.parametrize(
    "name",
    [
        "prices; DROP TABLE prices",
        'prices" OR 1=1 --',
        "prices--",
        "1prices",
        "pri ces",
        "",
        "a.b.c",
        "préis",
        "x" * (MAX_LENGTH + 1),
        "schema.",
        ".table",
    ],
)
def test_injection_and_malformed_table_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidSpecError, match="table="):
        parse_table(name)


@pytest.mark.parametrize("value", [None, 3, ["a"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidSpecError, match="column"):
        check_identifier(value, arg="column")


def test_valid_names_parse() -> None:
    assert parse_table("prices") == TableName(None, "prices")
    assert parse_table("erp.Markdown_2") == TableName("erp", "Markdown_2")
    assert str(parse_table("erp.prices")) == "erp.prices"
    assert check_identifier("_x" + "y" * (MAX_LENGTH - 2), arg="c")


def test_postgres_quoting_quotes_every_name() -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    try:
        assert sql.Identifier("erp", "Prices").as_string(conn) == '"erp"."Prices"'
    finally:
        conn.close()

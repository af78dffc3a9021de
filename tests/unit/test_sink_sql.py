"""SQL splitting for migrations and the read-only allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.clickhouse import DDL_DIR
from sinks.sql import ReadOnlyViolation, check_read_only, split_statements


def test_split_respects_literals_and_comments() -> None:
    sql = """
    -- leading comment; with a semicolon
    CREATE TABLE a (x String DEFAULT ';') ENGINE = Memory; /* block; */
    SELECT 'it''s; fine', "we;ird", `b;c` # trailing; comment
    ;
    ;
    """
    assert split_statements(sql) == [
        "CREATE TABLE a (x String DEFAULT ';') ENGINE = Memory",
        "SELECT 'it''s; fine', \"we;ird\", `b;c`",
    ]


def test_ddl_files_are_numbered_and_idempotent() -> None:
    files = sorted(Path(DDL_DIR).glob("*.sql"))
    assert [f.name[:3] for f in files] == [f"{i:03d}" for i in range(1, len(files) + 1)]
    for f in files:
        for stmt in split_statements(f.read_text()):
            assert "IF NOT EXISTS" in stmt.upper(), (f.name, stmt[:60])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select count() from agentstream.decisions FINAL",
        "WITH 1 AS x SELECT x",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SHOW TABLES FROM agentstream",
        "DESCRIBE agentstream.llm_calls",
        "EXPLAIN SELECT 1",
        "-- why\nSELECT 'DROP TABLE x; INSERT'",
        "SELECT 1;",
    ],
)
def test_read_only_allows(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO agentstream.decisions VALUES (1)",
        "DROP TABLE agentstream.decisions",
        "/* SELECT */ DROP TABLE x",
        "ALTER TABLE agentstream.decisions DELETE WHERE 1",
        "SET readonly = 0",
        "SELECT 1; DROP TABLE x",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://example.com', 'CSV')",
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "TRUNCATE TABLE agentstream.decisions",
        "",
    ],
)
def test_read_only_rejects(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        check_read_only(sql)

"""SQL splitting for migrations and the read-only allow-list."""

from __future__ import annotations

from pathlib import Path

from sinks.clickhouse import DDL_DIR
from sinks.sql import split_statements


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

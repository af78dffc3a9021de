"""Read-only SQL, decided by ClickHouse's own parser rather than by our reading of the text.

A hand tokenizer cannot keep up with ClickHouse's grammar (`$$…$$` strings, heredocs, nested
comments, unicode quotes), and the engine's `readonly` setting is not enough on its own: chDB
runs `INTO OUTFILE` and the scalar `file()` even with `readonly=1`. So a statement is screened in
three steps, all by the engine, before anything runs:

1. `formatQuerySingleLine` parses it: a syntax error or a second statement is refused, and the
   canonical text it returns is what is examined and then executed (never the original text);
2. `EXPLAIN AST` of the canonical text gives the syntax tree;
3. the tree must have an allowed root (SELECT / SHOW TABLES|COLUMNS|CREATE TABLE / DESCRIBE /
   EXISTS), no `INTO OUTFILE`, no `SETTINGS` anywhere, no table function outside a small
   allow-list, and no function that reaches files, processes or the network.

On top of that every read handle carries per-query limits (time, result rows and bytes, memory)
set before `readonly`, so a query cannot lift them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sinks.sql import ReadOnlyViolation

__all__ = ["QUERY_LIMITS", "ReadOnlyViolation", "screen"]

# Set on every read-only handle before `readonly` (which then forbids changing them).
QUERY_LIMITS: dict[str, Any] = {
    "max_execution_time": 60,
    "max_result_rows": 100_000,
    "max_result_bytes": 256 * 1024 * 1024,
    "result_overflow_mode": "break",
    "max_memory_usage": 2 * 1024**3,
    "max_query_size": 256 * 1024,
}
MAX_SQL_CHARS = 100_000

ALLOWED_ROOTS = frozenset(
    {"SelectWithUnionQuery", "ShowTables", "ShowColumns", "ShowCreateTableQuery", "DescribeQuery",
     "ExistsTableQuery"}
)
# Table functions that only generate data in memory.
SAFE_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values", "null"}
)
# Functions (anywhere in the tree) that read or write outside the database.
OUTSIDE_PREFIXES = (
    "file", "url", "s3", "gcs", "hdfs", "azureblobstorage", "remote", "cluster", "mysql",
    "postgresql", "mongodb", "redis", "sqlite", "jdbc", "odbc", "executable", "input", "iceberg",
    "deltalake", "hudi", "dictionary", "loop", "merge", "view", "viewifpermitted", "ytsaurus",
    "arrowflight", "prometheus", "timeseries",
)
# Statement-level nodes that never belong to a read.
FORBIDDEN_NODES = frozenset({"Set", "SetQuery", "InsertQuery", "CreateQuery", "AlterQuery", "DropQuery"})


@dataclass(frozen=True)
class _Node:
    depth: int
    kind: str
    name: str  # for Function / Identifier / Literal nodes: what follows the kind


def _parse_tree(lines: list[str]) -> list[_Node]:
    nodes = []
    for line in lines:
        depth = len(line) - len(line.lstrip(" "))
        text = line.strip()
        text = text.split(" (children", 1)[0]
        kind, _, name = text.partition(" ")
        nodes.append(_Node(depth, kind, name.strip()))
    return nodes


def _first_column(client: Any, sql: str, params: Mapping[str, Any] | None) -> list[str]:
    try:
        result = client.query(sql, parameters=dict(params) if params else None)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReadOnlyViolation(f"read-only: not a single valid statement ({message[:300]})") from None
    return [str(row[0]) for row in result.result_rows]


def _check_tree(nodes: list[_Node]) -> None:
    if not nodes:
        raise ReadOnlyViolation("read-only: empty query")
    root = nodes[0]
    if root.kind not in ALLOWED_ROOTS:
        raise ReadOnlyViolation(
            f"read-only: {root.kind} is not allowed (SELECT, SHOW, DESCRIBE, EXISTS only)"
        )
    table_depths: list[int] = []
    for node in nodes:
        while table_depths and node.depth <= table_depths[-1]:
            table_depths.pop()
        if node.kind in FORBIDDEN_NODES:
            what = "SETTINGS" if node.kind.startswith("Set") else node.kind
            raise ReadOnlyViolation(f"read-only: {what} is not allowed")
        if node.depth == 1 and node.kind == "Literal":
            raise ReadOnlyViolation("read-only: INTO OUTFILE is not allowed")
        if node.kind == "TableExpression":
            table_depths.append(node.depth)
            continue
        if node.kind != "Function":
            continue
        name = node.name.lower()
        is_table_function = bool(table_depths) and node.depth == table_depths[-1] + 1
        if is_table_function and name not in SAFE_TABLE_FUNCTIONS:
            raise ReadOnlyViolation(f"read-only: table function {node.name} is not allowed")
        if not is_table_function and name.startswith(OUTSIDE_PREFIXES) and name not in _SAFE_SCALARS:
            raise ReadOnlyViolation(f"read-only: function {node.name} is not allowed")


# Scalar functions whose names start like an outside-reaching one but only compute.
_SAFE_SCALARS = frozenset(
    {"urlhierarchy", "urlpathhierarchy", "inputformatname"}
)


def screen(client: Any, sql: str, params: Mapping[str, Any] | None = None) -> str:
    """The canonical text of `sql` if it is one read-only statement; else ReadOnlyViolation.

    `client` is a clickhouse-connect client of the engine that will run the statement (its
    parser is the one that counts). Run the returned text, not `sql`.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise ReadOnlyViolation("read-only: empty query")
    if len(sql) > MAX_SQL_CHARS:
        raise ReadOnlyViolation(f"read-only: query longer than {MAX_SQL_CHARS} characters")
    if "\x00" in sql:
        raise ReadOnlyViolation("read-only: NUL byte in query")
    canonical = _first_column(client, "SELECT formatQuerySingleLine({sql:String})", {"sql": sql})
    if len(canonical) != 1 or not canonical[0].strip():
        raise ReadOnlyViolation("read-only: not a single valid statement")
    statement = canonical[0]
    _check_tree(_parse_tree(_first_column(client, f"EXPLAIN AST {statement}", params)))
    return statement

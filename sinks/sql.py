"""Small SQL text helpers shared by migrations and the read-only query path.

Both need to see SQL the way ClickHouse does (string literals, quoted identifiers and comments
are opaque), and neither should pull in a parser for that.
"""

from __future__ import annotations

import re

__all__ = ["ReadOnlyViolation", "check_read_only", "split_statements", "strip_comments"]

READ_ONLY_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
# Reads that still reach outside the database (files, network) or write a file.
_OUTSIDE_RE = re.compile(
    r"\bINTO\s+OUTFILE\b|\b(?:file|url|s3|s3Cluster|gcs|azureBlobStorage|hdfs|remote|remoteSecure|"
    r"cluster|mysql|postgresql|mongodb|redis|sqlite|jdbc|odbc|executable|input|iceberg|deltaLake|"
    r"hudi|fileCluster|urlCluster)\s*\(",
    re.IGNORECASE,
)


class ReadOnlyViolation(ValueError):
    """A statement the read-only query path refuses to run; the message says why."""


def _scan(sql: str) -> list[tuple[str, str]]:
    """Split `sql` into (kind, text) pieces: kind is code, string, ident, comment or semicolon."""
    out: list[tuple[str, str]] = []
    i, n, start = 0, len(sql), 0

    def code_until(j: int) -> None:
        if j > start:
            out.append(("code", sql[start:j]))

    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            code_until(i)
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            j = min(j + 1, n)
            out.append(("string" if ch == "'" else "ident", sql[i:j]))
            i = start = j
        elif sql.startswith("--", i) or ch == "#":
            code_until(i)
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(("comment", sql[i:j]))
            i = start = j
        elif sql.startswith("/*", i):
            code_until(i)
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(("comment", sql[i:j]))
            i = start = j
        elif ch == ";":
            code_until(i)
            out.append(("semicolon", ";"))
            i = start = i + 1
        else:
            i += 1
    code_until(n)
    return out


def split_statements(sql: str) -> list[str]:
    """Statements of a multi-statement SQL file, comments dropped, `;` inside literals kept."""
    statements: list[str] = []
    current: list[str] = []
    for kind, text in _scan(sql):
        if kind == "semicolon":
            stmt = "".join(current).strip()
            if stmt:
                statements.append(stmt)
            current = []
        elif kind == "comment":
            current.append(" ")
        else:
            current.append(text)
    stmt = "".join(current).strip()
    if stmt:
        statements.append(stmt)
    return statements


def strip_comments(sql: str) -> str:
    """`sql` without comments (string literals untouched)."""
    return "".join(" " if kind == "comment" else text for kind, text in _scan(sql)).strip()


def check_read_only(sql: str) -> str:
    """Return the single statement in `sql` if it only reads, else raise ReadOnlyViolation.

    A keyword allow-list, in front of the engine's own `readonly` setting: it keeps out writes,
    DDL, `SET`, multi-statement input, `INTO OUTFILE` (which chDB runs even when readonly=1) and
    table functions that read files or the network.
    """
    statements = split_statements(sql)
    if not statements:
        raise ReadOnlyViolation("read-only: empty query")
    if len(statements) > 1:
        raise ReadOnlyViolation("read-only: one statement per query")
    stmt = statements[0]
    code = " ".join(text for kind, text in _scan(stmt) if kind == "code")
    m = re.match(r"[\s(]*([A-Za-z]+)", code)
    keyword = m[1].upper() if m else ""
    if keyword not in READ_ONLY_KEYWORDS:
        allowed = ", ".join(sorted(READ_ONLY_KEYWORDS))
        raise ReadOnlyViolation(
            f"read-only: {keyword or 'this statement'} is not allowed ({allowed})"
        )
    bad = _OUTSIDE_RE.search(code)
    if bad:
        raise ReadOnlyViolation(f"read-only: {bad[0].rstrip('( ')} is not allowed")
    return stmt

"""Splitting our own migration files into statements (string literals, quoted identifiers and
comments are opaque). Only for trusted DDL: what an analyst sends is judged by the engine's own
parser in `sinks.readonly`, never by this scanner.
"""

from __future__ import annotations

__all__ = ["ReadOnlyViolation", "split_statements", "strip_comments"]


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

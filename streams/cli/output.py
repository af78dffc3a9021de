"""How commands talk to people: one console, tables, and errors that end with a non-zero exit."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True, soft_wrap=True)  # one line per error: greppable


def fail(message: str, code: int = 1) -> NoReturn:
    """A clear message and a non-zero exit (faust's command runner turns exceptions into tracebacks)."""
    errors.print(f"[red]error:[/] {message}", highlight=False)
    raise SystemExit(code)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return str(value)


def print_rows(title: str, columns: list[str], rows: list[tuple[Any, ...]], fmt: str = "table") -> None:
    if fmt == "json":
        for r in rows:
            click.echo(json.dumps(dict(zip(columns, r, strict=True)), default=str, ensure_ascii=False))
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in r] for r in rows])
        click.echo(buf.getvalue(), nl=False)
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(_cell(v) for v in r))
    console.print(table)

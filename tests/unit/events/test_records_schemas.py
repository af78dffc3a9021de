"""The dataclasses in streams.events.records must mirror the .avsc files exactly (names, order,
types, defaults), or the codec would drop or invent data at the Python boundary."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest

from streams.events import records as r
from streams.events.codecs import SCHEMA_DIR

PRIMITIVES = {"string": str, "int": int, "long": int, "double": float, "bytes": bytes, "boolean": bool}


def _latest_schemas() -> dict[str, tuple[int, dict]]:
    latest: dict[str, tuple[int, Path]] = {}
    for p in SCHEMA_DIR.glob("*.avsc"):
        m = re.fullmatch(r"([a-z_]+)\.v(\d+)\.avsc", p.name)
        assert m, f"bad schema file name {p.name}"
        name, version = m[1], int(m[2])
        if name not in latest or version > latest[name][0]:
            latest[name] = (version, p)
    return {name: (v, json.loads(p.read_text())) for name, (v, p) in latest.items()}


SCHEMAS = _latest_schemas()


def _check_record(cls: type, schema: dict) -> None:
    assert schema["type"] == "record"
    assert schema["name"] == cls.__name__
    assert schema.get("namespace") == "agentstream.events"
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == [f["name"] for f in schema["fields"]], cls.__name__
    hints = typing.get_type_hints(cls)
    for f, sf in zip(fields, schema["fields"], strict=True):
        where = f"{cls.__name__}.{f.name}"
        avro_type, py_type = sf["type"], hints[f.name]
        if isinstance(avro_type, str):
            assert py_type is PRIMITIVES[avro_type], where
        elif isinstance(avro_type, list):
            assert avro_type == ["null", "bytes"] and py_type == bytes | None, where
        elif avro_type["type"] == "map":
            assert avro_type["values"] == "string" and py_type == dict[str, str], where
        else:
            assert avro_type["type"] == "array", where
            items = avro_type["items"]
            (item_type,) = typing.get_args(py_type)
            assert typing.get_origin(py_type) is list, where
            if isinstance(items, str):
                assert item_type is PRIMITIVES[items], where
            else:
                _check_record(item_type, items)
        if "default" in sf:
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            expected = sf["default"]
            if sf["type"] == "bytes":  # Avro writes a bytes default as a (latin-1) string
                expected = expected.encode("latin-1")
            assert default == expected, where
            assert type(default) is type(expected), where
        else:
            assert f.default is dataclasses.MISSING, where
            assert f.default_factory is dataclasses.MISSING, where


def test_one_class_per_schema() -> None:
    assert sorted(r.BY_SCHEMA) == sorted(SCHEMAS)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_dataclass_mirrors_schema(name: str) -> None:
    version, schema = SCHEMAS[name]
    first = schema["fields"][0]
    assert (first["name"], first["type"], first["default"]) == ("schema_version", "int", version)
    _check_record(r.BY_SCHEMA[name], schema)


def test_now_ms_is_epoch_millis() -> None:
    assert 1_600_000_000_000 < r.now_ms() < 4_000_000_000_000

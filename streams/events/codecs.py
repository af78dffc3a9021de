"""Avro codec for pipeline events: fastavro bodies in Avro single-object encoding framing.

Every Kafka value is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form + the Avro binary body. The fingerprint lets any
consumer (Python, Java, ClickHouse tooling) find the exact writer schema and resolve it
against its own reader schema, so producers and consumers can upgrade schemas independently.

Schemas live in ``schemas/<name>.v<N>.avsc``; every version is loaded (old bytes stay
readable) and the highest version of each name is what we write and read into.
Decoding is strict: any framing, schema or body problem raises `DecodeError` with a reason,
never a raw fastavro/struct exception, so stages can dead-letter the record and move on.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import fastavro
from fastavro.schema import fingerprint as _fingerprint_hex
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

__all__ = [
    "HEADER_LEN",
    "MARKER",
    "SCHEMA_DIR",
    "Codec",
    "DecodeError",
    "EncodeError",
    "SchemaInfo",
    "get_codec",
]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
MARKER = b"\xc3\x01"
"""Single-object encoding marker (Avro spec, "Single-object encoding")."""
HEADER_LEN = len(MARKER) + 8

_FILE_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")

T = TypeVar("T")


class DecodeError(ValueError):
    """Bytes that are not a valid event for the requested type; the message says why."""


class EncodeError(ValueError):
    """A record that does not conform to its schema (wrong type, missing field, ...)."""


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """One registered schema version; `schema` is fastavro-parsed (parse once, hot path)."""

    name: str  # short name, e.g. "request"
    version: int
    record_name: str  # e.g. "Request"
    fullname: str  # e.g. "agentstream.events.Request"
    fingerprint: bytes  # CRC-64-AVRO of the Parsing Canonical Form, little-endian
    canonical: str
    schema: dict[str, Any]
    field_names: tuple[str, ...]
    required: tuple[str, ...]  # top-level fields without a default


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _crc64_fingerprint(canonical: str) -> bytes:
    # fastavro returns the 8 fingerprint bytes as hex in the spec's (little-endian) order.
    return bytes.fromhex(_fingerprint_hex(canonical, "CRC-64-AVRO"))


def _dataclass_item(tp: Any) -> type | None:
    """The dataclass X if `tp` is list[X] (nested Avro records travel as arrays)."""
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return item
    return None


@functools.cache
def _to_dict_fn(cls: type) -> Callable[[Any], dict[str, Any]]:
    """Fast dataclass -> dict (dataclasses.asdict deep-copies and is ~10x slower)."""
    hints = typing.get_type_hints(cls)
    plain: list[str] = []
    nested: list[tuple[str, Callable[[Any], dict[str, Any]]]] = []
    for f in dataclasses.fields(cls):
        item = _dataclass_item(hints[f.name])
        if item is None:
            plain.append(f.name)
        else:
            nested.append((f.name, _to_dict_fn(item)))

    def to_dict(obj: Any) -> dict[str, Any]:
        d = {n: getattr(obj, n) for n in plain}
        for n, conv in nested:
            d[n] = [conv(x) for x in getattr(obj, n)]
        return d

    return to_dict


@functools.cache
def _from_dict_fn(cls: type) -> Callable[[dict[str, Any]], Any]:
    """Fast dict -> dataclass. Fields the class lacks are dropped (a newer reader schema)."""
    hints = typing.get_type_hints(cls)
    names: list[str] = []
    nested: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
    for f in dataclasses.fields(cls):
        names.append(f.name)
        item = _dataclass_item(hints[f.name])
        if item is not None:
            nested.append((f.name, _from_dict_fn(item)))

    def from_dict(d: dict[str, Any]) -> Any:
        kw = {n: d[n] for n in names}
        for n, conv in nested:
            kw[n] = [conv(x) for x in kw[n]]
        return cls(**kw)

    return from_dict


def _short_error(err: object) -> str:
    """fastavro dumps whole nested schemas into validation errors; name the record instead."""
    msg = re.sub(
        r"expected \{.*?'name': '([^']+)'.*\}", r"expected record \1", str(err), flags=re.S
    )
    return msg if len(msg) <= 300 else f"{msg[:200]}...{msg[-90:]}"


def _describe(exc: BaseException) -> str:
    """Turn a fastavro read failure into a reason a human can act on."""
    msg = str(exc)
    if isinstance(exc, EOFError):
        m = re.match(r"Expected (-\d+) bytes", msg)
        if m:
            return f"negative length {m[1]} in the body"
        return f"truncated body ({msg})" if msg else "truncated body"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 in a string field ({exc.reason} at byte {exc.start})"
    if isinstance(exc, IndexError):
        return f"truncated or malformed varint ({msg})"
    return f"{type(exc).__name__}: {msg}"


class Codec:
    """Encodes/decodes events with the schemas in `schema_dir`.

    Holds a fingerprint -> writer schema registry of every version, and the latest version
    per short name, which is both the writer schema for `encode` and the reader schema
    for `decode`. Safe to share between threads/tasks once loaded.
    """

    def __init__(self, schema_dir: Path = SCHEMA_DIR, *, validate: bool = True) -> None:
        """`validate=False` skips the per-record type check on encode (fastavro alone would
        silently coerce e.g. 1.5 into an int field or overflow a 32-bit int)."""
        self._by_fp: dict[bytes, SchemaInfo] = {}
        self._latest: dict[str, SchemaInfo] = {}
        self._validate = validate
        self._frozen = False
        schema_dir = Path(schema_dir)
        if not schema_dir.is_dir():
            raise FileNotFoundError(f"schema directory not found: {schema_dir}")
        for path in sorted(schema_dir.glob("*.v*.avsc")):
            m = _FILE_RE.match(path.name)
            if m is None:
                raise ValueError(f"bad schema file name {path.name!r}: want <snake_name>.vN.avsc")
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
                self.register(schema, name=m["name"], version=int(m["version"]))
            except Exception as exc:
                raise ValueError(f"cannot load schema {path}: {exc}") from exc
        if not self._latest:
            raise ValueError(f"no *.vN.avsc schemas in {schema_dir}")

    # -- registry ---------------------------------------------------------------------

    def register(
        self,
        schema: dict[str, Any],
        *,
        name: str | None = None,
        version: int | None = None,
        writer_only: bool = False,
    ) -> bytes:
        """Add a schema version and return its fingerprint.

        `name` defaults to the record name in snake_case, `version` to the default of the
        `schema_version` field. Unless `writer_only`, it becomes the name's reader/writer
        schema when its version is the highest; a `writer_only` schema is only used to
        decode bytes written with it (e.g. an old consumer meeting a newer producer).
        """
        if self._frozen:
            raise RuntimeError("the shared codec from get_codec() is immutable; build a Codec")
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise ValueError("top-level schema must be a record")
        fields = schema.get("fields") or []
        first = fields[0] if fields else {}
        if first.get("name") != "schema_version" or first.get("type") != "int":
            raise ValueError("first field must be {'name': 'schema_version', 'type': 'int'}")
        parsed = fastavro.parse_schema(schema)
        canonical = to_parsing_canonical_form(schema)
        fullname = json.loads(canonical)["name"]
        record_name = fullname.rpartition(".")[2]
        info = SchemaInfo(
            name=name or _snake(record_name),
            version=int(version if version is not None else first.get("default", 1)),
            record_name=record_name,
            fullname=fullname,
            fingerprint=_crc64_fingerprint(canonical),
            canonical=canonical,
            schema=typing.cast(dict[str, Any], parsed),
            field_names=tuple(f["name"] for f in fields),
            required=tuple(f["name"] for f in fields if "default" not in f),
        )
        known = self._by_fp.get(info.fingerprint)
        if known is not None and (known.name, known.version) != (info.name, info.version):
            raise ValueError(
                f"schema {info.name} v{info.version} is identical to {known.name} v{known.version}"
            )
        self._by_fp[info.fingerprint] = info
        if not writer_only:
            current = self._latest.get(info.name)
            if current is None or info.version >= current.version:
                self._latest[info.name] = info
        return info.fingerprint

    def schema_info(self, name: str) -> SchemaInfo:
        """The latest registered version of `name` (the reader/writer schema)."""
        try:
            return self._latest[name]
        except KeyError:
            raise KeyError(f"unknown schema {name!r}; known: {sorted(self._latest)}") from None

    def fingerprint(self, name: str) -> bytes:
        """8-byte CRC-64-AVRO fingerprint of the latest version of `name` (as framed)."""
        return self.schema_info(name).fingerprint

    def writer_info(self, data: bytes) -> SchemaInfo:
        """The writer schema named by a framed message's header (cheap: no body decode)."""
        return self._lookup(data)

    @property
    def names(self) -> list[str]:
        """Short names with at least one reader/writer schema."""
        return sorted(self._latest)

    # -- encode -----------------------------------------------------------------------

    def encode(self, event: Any) -> bytes:
        """Frame and encode an event dataclass from `streams.events.records` using its `SCHEMA`."""
        try:
            name = type(event).SCHEMA
        except AttributeError:
            raise EncodeError(f"{type(event).__name__} has no SCHEMA class attribute") from None
        return self._encode(self.schema_info(name), _to_dict_fn(type(event))(event))  # type: ignore[arg-type]  # typeshed: a class is Hashable

    def encode_dict(self, name: str, record: dict[str, Any]) -> bytes:
        """Frame and encode a plain dict with the latest schema `name` (no extra keys)."""
        return self._encode(self.schema_info(name), dict(record))

    def _encode(self, info: SchemaInfo, record: dict[str, Any]) -> bytes:
        # schema_version always states the schema actually used to write the body.
        record["schema_version"] = info.version
        missing = [n for n in info.required if n not in record]
        if missing:
            raise EncodeError(f"cannot encode {info.record_name}: missing field(s) {missing}")
        if self._validate:
            try:
                validate(record, info.schema, raise_errors=True, strict=True)
            except ValidationError as exc:
                errors = "; ".join(_short_error(e) for e in exc.errors or [exc])
                raise EncodeError(f"cannot encode {info.record_name}: {errors}") from None
        buf = io.BytesIO()
        buf.write(MARKER)
        buf.write(info.fingerprint)
        try:
            fastavro.schemaless_writer(buf, info.schema, record, strict_allow_default=True)
        except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as exc:
            raise EncodeError(f"cannot encode {info.record_name}: {exc}") from None
        return buf.getvalue()

    # -- decode -----------------------------------------------------------------------

    def decode(self, data: bytes, cls: type[T]) -> T:
        """Decode framed bytes into `cls`, resolving the writer schema against the latest
        version of `cls.SCHEMA`. Raises DecodeError for anything that is not such an event."""
        name = cls.SCHEMA  # type: ignore[attr-defined]
        record = self.decode_dict(data, name)
        try:
            return typing.cast(T, _from_dict_fn(cls)(record))  # type: ignore[arg-type]  # typeshed: a class is Hashable
        except KeyError as exc:
            raise DecodeError(
                f"missing field {exc.args[0]!r}: reader schema {name} "
                f"v{self._latest[name].version} lacks a field of {cls.__name__}"
            ) from None
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"cannot build {cls.__name__}: {exc}") from None

    def decode_dict(self, data: bytes, name: str) -> dict[str, Any]:
        """Decode framed bytes into a dict shaped by the latest reader schema `name`."""
        reader = self.schema_info(name)
        writer = self._lookup(data)
        if writer.fullname != reader.fullname:
            raise DecodeError(f"expected {reader.record_name}, got {writer.record_name}")
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            if writer is reader:
                record = fastavro.schemaless_reader(buf, writer.schema, None)
            else:
                record = fastavro.schemaless_reader(buf, writer.schema, reader.schema)
        except fastavro.read.SchemaResolutionError as exc:
            raise DecodeError(self._resolution_reason(writer, reader, exc)) from None
        except Exception as exc:
            raise DecodeError(
                f"body does not match schema {writer.record_name} v{writer.version}: "
                f"{_describe(exc)}"
            ) from None
        extra = len(data) - buf.tell()
        if extra:
            raise DecodeError(
                f"trailing bytes: {extra} byte(s) after the {writer.record_name} body"
            )
        if not isinstance(record, dict):
            raise DecodeError(f"{writer.record_name} body is not a record")
        return record

    def _lookup(self, data: bytes) -> SchemaInfo:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_LEN:
            raise DecodeError(
                f"not Avro single-object encoding: {len(data)} bytes is shorter than the "
                f"{HEADER_LEN}-byte header"
            )
        if data[:2] != MARKER:
            raise DecodeError(
                f"not Avro single-object encoding: bad marker 0x{bytes(data[:2]).hex()}"
            )
        fp = bytes(data[2:HEADER_LEN])
        info = self._by_fp.get(fp)
        if info is None:
            raise DecodeError(f"unknown schema fingerprint 0x{fp.hex()}")
        return info

    @staticmethod
    def _resolution_reason(writer: SchemaInfo, reader: SchemaInfo, exc: Exception) -> str:
        msg = str(exc)
        m = re.search(r"No default value for field (\S+)", msg)
        if m:
            return (
                f"missing field {m[1]}: writer {writer.record_name} v{writer.version} lacks it "
                f"and reader v{reader.version} has no default"
            )
        return (
            f"writer {writer.record_name} v{writer.version} cannot be resolved to reader "
            f"v{reader.version}: {msg}"
        )


def as_dict(event: Any) -> dict[str, Any]:
    """An event dataclass as the plain dict its schema encodes (nested records as dicts)."""
    return _to_dict_fn(type(event))(event)  # type: ignore[arg-type]  # typeshed: a class is Hashable


def from_dict(cls: type[T], record: dict[str, Any]) -> T:
    """The event dataclass `cls` of a plain dict of its schema's record (`as_dict`'s inverse)."""
    return cast(T, _from_dict_fn(cls)(record))  # type: ignore[arg-type]  # typeshed: a class is Hashable


@functools.cache
def get_codec(*, validate: bool = True) -> Codec:
    """The process-wide codec over SCHEMA_DIR, loaded once; immutable afterwards.
    `validate=False`: for writers whose records are built from typed values only."""
    codec = Codec(validate=validate)
    codec._frozen = True
    return codec

"""The codec must produce standard Avro single-object encoding that other Avro stacks read,
survive schema evolution both ways, and turn every bad input into a DecodeError with a reason."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import random
import shutil
import typing
from pathlib import Path

import avro.io
import avro.schema
import pytest

from streams.events import records as r
from streams.events.codecs import (
    HEADER_LEN,
    MARKER,
    SCHEMA_DIR,
    Codec,
    DecodeError,
    EncodeError,
    get_codec,
)

T0 = 1_764_000_000_000  # fixed epoch ms so failures are reproducible


def _samples() -> dict[str, object]:
    """One realistic instance per event, exercising nested records, maps, unions, unicode."""
    ctx = [
        r.ContextMessage(role="user", content="Mein Passwort funktioniert nicht 🙁"),
        r.ContextMessage(role="assistant", content="Haben Sie den Link in der E-Mail benutzt?"),
    ]
    ids = {"request_id": "req-7f3a", "session_id": "sess-19", "user_id": "u-42"}
    samples: dict[str, object] = {
        "request": r.Request(
            **ids,
            tenant_id="acme",
            text="Ja, aber er ist abgelaufen. Karte 4111-xxxx bitte sperren!",
            context=ctx,
            metadata={"client": "web", "locale": "de-DE"},
            created_ms=T0,
        ),
        "routed": r.Routed(
            **ids,
            tenant_id="acme",
            text="Ja, aber er ist abgelaufen. Karte [CARD] bitte sperren!",
            language="de",
            domain="billing",
            model="gpt-4o-mini",
            max_tokens=512,
            complexity="medium",
            rollout_arm="B",
            config_version="2024-11-25.3",
            notes=["pii:card_number redacted"],
            context=ctx,
            created_ms=T0,
            routed_ms=T0 + 12,
        ),
        "executed": r.Executed(
            **ids,
            tenant_id="acme",
            language="de",
            domain="billing",
            model="gpt-4o-mini",
            rollout_arm="B",
            config_version="2024-11-25.3",
            status="escalated",
            answer="Ich habe die Sperrung Ihrer Karte vorbereitet.",
            reasons=["policy:card_block_needs_human"],
            notes=["tool held"],
            steps=[
                r.Step(
                    index=0,
                    kind="llm_call",
                    name="gpt-4o-mini",
                    input_tokens=812,
                    output_tokens=64,
                    latency_ms=412.5,
                ),
                r.Step(
                    index=1,
                    kind="tool_call",
                    name="block_card",
                    arguments='{"card_last4": "1111"}',
                    idempotency_key="req-7f3a:1",
                ),
                r.Step(
                    index=2, kind="hold", name="block_card", status="held", result='{"held": true}'
                ),
            ],
            input_tokens=812,
            output_tokens=64,
            llm_calls=1,
            created_ms=T0,
            executed_ms=T0 + 900,
            complexity="high",
            follow_up=1,
            cost_usd=0.0042,
        ),
        "response": r.Response(
            **ids,
            tenant_id="acme",
            status="escalated",
            reason="policy:card_block_needs_human",
            answer="Ein Mitarbeiter meldet sich gleich.",
            domain="billing",
            model="gpt-4o-mini",
            language="de",
            rollout_arm="B",
            config_version="2024-11-25.3",
            input_tokens=812,
            output_tokens=64,
            created_ms=T0,
            responded_ms=T0 + 950,
            latency_ms=950.25,
            follow_up=1,
            cost_usd=0.0042,
        ),
        "escalation": r.Escalation(
            **ids,
            tenant_id="acme",
            domain="billing",
            reasons=["policy:card_block_needs_human"],
            draft_answer="Ich habe die Sperrung Ihrer Karte vorbereitet.",
            held_action='{"tool": "block_card", "arguments": {"card_last4": "1111"}}',
            created_ms=T0,
            escalated_ms=T0 + 905,
            priority="high",
            follow_up=1,
        ),
        "human_decision": r.HumanDecision(
            request_id="req-7f3a",
            session_id="sess-19",
            reviewer="alice@acme",
            decision="edit",
            edited_answer="Ihre Karte ist gesperrt.",
            note="verified caller",
            decided_ms=T0 + 60_000,
            decision_id="d-0001",
            edited_arguments='{"card_last4": "2222"}',
            follow_up=1,
        ),
        "dead_letter": r.DeadLetter(
            topic="agent.requests",
            partition=3,
            offset=2**40 + 7,
            key=b"req-7f3a",
            value=b"\x00\xff not avro \xc3",
            reason="not Avro single-object encoding: bad marker 0x00ff",
            failed_ms=T0 + 1,
        ),
        "span": r.Span(
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            parent_span_id="a3ce929d0e0e4736",
            trace_state="vendor=1",
            name="execute",
            kind="Internal",
            service_name="agentstream-executor",
            resource_attributes={"service.version": "0.1.0", "host.name": "w1"},
            scope_name="streams.stages.execution",
            scope_version="0.1.0",
            start_time_unix_nano=T0 * 1_000_000,
            end_time_unix_nano=T0 * 1_000_000 + 900_000_123,
            attributes={"llm.model": "gpt-4o-mini", "tools": '["block_card"]'},
            status_code="Error",
            status_message="held for review",
            events=[
                r.SpanEvent(
                    time_unix_nano=T0 * 1_000_000 + 5,
                    name="hold",
                    attributes={"tool": "block_card"},
                )
            ],
            links=[
                r.SpanLink(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331")
            ],
        ),
        "budget_event": r.BudgetEvent(
            kind="reserve",
            request_id="req-7f3a",
            session_id="sess-19",
            user_id="u-42",
            tenant_id="acme",
            routed=b"\xc3\x01routed-bytes",
            tokens=1_234,
            cost_usd=0.0123,
            cheaper_tokens=1_000,
            cheaper_cost_usd=0.001,
            cheaper_model="sim-small",
            created_ms=T0,
        ),
        "worker_status": r.WorkerStatus(
            worker_id="host-a:4242",
            host="host-a",
            pid=4242,
            started_ms=T0,
            partitions=[0, 2],
            breakers={"simulator/sim-large": "open (2 trips)"},
            running_tasks=3,
            updated_ms=T0 + 10_000,
        ),
        "control": r.Control(
            name="rollout",
            percent=20,
            candidate_version="2026-11-28.1-candidate",
            reason="canary",
            actor="alice@acme",
            updated_ms=T0 + 5,
        ),
    }
    span = typing.cast(r.Span, samples["span"])
    samples["span_batch"] = r.SpanBatch(spans=[span, dataclasses.replace(span, span_id="b7ad6b7169203331")])
    return samples


SAMPLES = _samples()


@pytest.fixture
def codec() -> Codec:
    return Codec()


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (Rabin) straight from the Avro spec, independent of both libraries."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def _avro_schema(name: str) -> avro.schema.Schema:
    """The latest version of a schema, as the official Avro library reads it."""
    latest = max(SCHEMA_DIR.glob(f"{name}.v*.avsc"), key=lambda p: int(p.name.split(".v")[1].split(".")[0]))
    return avro.schema.parse(latest.read_text())


# -- round trips ------------------------------------------------------------------------


def test_samples_cover_every_schema(codec: Codec) -> None:
    assert sorted(SAMPLES) == codec.names == sorted(r.BY_SCHEMA)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(codec: Codec, name: str) -> None:
    event = SAMPLES[name]
    data = codec.encode(event)
    back = codec.decode(data, type(event))
    assert back == event
    assert back is not event
    assert codec.decode_dict(data, name)["schema_version"] == event.schema_version


@pytest.mark.parametrize(
    ("name", "version", "added"),
    [
        ("executed", 1, ("complexity", "follow_up", "cost_usd")),
        ("executed", 2, ("follow_up", "cost_usd")),
        ("response", 1, ("follow_up", "cost_usd")),
        ("escalation", 1, ("priority", "follow_up")),
        ("human_decision", 1, ("decision_id", "edited_arguments", "follow_up")),
    ],
)
def test_older_versions_still_decode(codec: Codec, name: str, version: int, added: tuple[str, ...]) -> None:
    """Records written before a field existed decode, the new fields at their defaults."""
    old = avro.schema.parse((SCHEMA_DIR / f"{name}.v{version}.avsc").read_text())
    sample = SAMPLES[name]
    datum = codec.decode_dict(codec.encode(sample), name)
    datum = {k: v for k, v in datum.items() if k not in added} | {"schema_version": version}
    buf = io.BytesIO()
    avro.io.DatumWriter(old).write(datum, avro.io.BinaryEncoder(buf))
    back = codec.decode(MARKER + old.fingerprint("CRC-64-AVRO") + buf.getvalue(), type(sample))
    fields = type(sample).__dataclass_fields__
    for field_name in added:
        assert getattr(sample, field_name) != fields[field_name].default, "sample sets the new field"
        assert getattr(back, field_name) == fields[field_name].default
    assert back.request_id == sample.request_id


def test_defaults_round_trip(codec: Codec) -> None:
    minimal = r.Request(request_id="a", session_id="b", user_id="c", text="", created_ms=0)
    back = codec.decode(codec.encode(minimal), r.Request)
    assert back == minimal
    assert (back.tenant_id, back.context, back.metadata) == ("default", [], {})
    dl = r.DeadLetter(topic="t", partition=0, offset=0, value=b"", reason="x", failed_ms=0)
    assert codec.decode(codec.encode(dl), r.DeadLetter).key is None


def test_encode_dict_matches_encode(codec: Codec) -> None:
    event = SAMPLES["executed"]
    as_dict = codec.decode_dict(codec.encode(event), "executed")
    assert as_dict["steps"][1]["arguments"] == '{"card_last4": "1111"}'
    assert codec.encode_dict("executed", as_dict) == codec.encode(event)


def test_schema_version_states_the_writer_schema(codec: Codec) -> None:
    lying = dataclasses.replace(SAMPLES["request"], schema_version=7)
    assert codec.decode(codec.encode(lying), r.Request).schema_version == 1


# -- framing ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_single_object_framing(codec: Codec, name: str) -> None:
    data = codec.encode(SAMPLES[name])
    assert data[:2] == b"\xc3\x01" == MARKER
    official = _avro_schema(name)
    expected = official.fingerprint("CRC-64-AVRO")
    own = _crc64_avro(official.canonical_form.encode()).to_bytes(8, "little")
    assert own == expected
    assert data[2:10] == expected == codec.fingerprint(name)
    assert len(data) > HEADER_LEN


@pytest.mark.parametrize(
    ("canonical", "signed"),
    [  # published vectors from Avro's share/test/data/schema-tests.txt
        ('"null"', 7195948357588979594),
        ('"boolean"', -6970731678124411036),
        ('"int"', 8247732601305521295),
    ],
)
def test_own_crc64_matches_spec_vectors(canonical: str, signed: int) -> None:
    assert _crc64_avro(canonical.encode()) == signed & 0xFFFF_FFFF_FFFF_FFFF


def test_fingerprint_ignores_docs_and_whitespace(codec: Codec) -> None:
    schema = json.loads((SCHEMA_DIR / "request.v1.avsc").read_text())
    stripped = copy.deepcopy(schema)
    stripped.pop("doc")
    for f in stripped["fields"]:
        f.pop("doc", None)
    assert codec.register(stripped, name="request", version=1) == codec.fingerprint("request")


# -- evolution --------------------------------------------------------------------------


def _v2_request(with_default: bool = True) -> dict:
    schema = json.loads((SCHEMA_DIR / "request.v1.avsc").read_text())
    schema["fields"][0]["default"] = 2
    field: dict = {"name": "priority", "type": "string"}
    if with_default:
        field["default"] = "normal"
    schema["fields"].append(field)
    return schema


@pytest.fixture
def v2_dir(tmp_path: Path) -> Path:
    for p in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "request.v2.avsc").write_text(json.dumps(_v2_request()))
    return tmp_path


def test_v2_reader_reads_v1_bytes(codec: Codec, v2_dir: Path) -> None:
    v2 = Codec(v2_dir)
    assert v2.schema_info("request").version == 2
    assert v2.fingerprint("request") != codec.fingerprint("request")
    old = codec.encode(SAMPLES["request"])
    rec = v2.decode_dict(old, "request")
    assert rec["priority"] == "normal"
    assert rec["schema_version"] == 1
    assert rec["text"] == SAMPLES["request"].text
    assert rec["context"][1]["role"] == "assistant"
    # The v1 dataclass still decodes through the v2 reader; the unknown field is dropped.
    assert v2.decode(old, r.Request) == SAMPLES["request"]


def test_v1_reader_reads_v2_bytes(codec: Codec, v2_dir: Path) -> None:
    v2 = Codec(v2_dir)
    rec = dataclasses.asdict(SAMPLES["request"]) | {"priority": "high"}
    new = v2.encode_dict("request", rec)
    assert new[2:10] == v2.fingerprint("request")
    assert v2.decode_dict(new, "request")["priority"] == "high"
    assert v2.decode_dict(new, "request")["schema_version"] == 2

    with pytest.raises(DecodeError, match="unknown schema fingerprint 0x"):
        codec.decode(new, r.Request)
    codec.register(_v2_request(), name="request", version=2, writer_only=True)
    assert codec.schema_info("request").version == 1  # still the v1 reader
    back = codec.decode(new, r.Request)
    assert back.schema_version == 2
    assert dataclasses.replace(back, schema_version=1) == SAMPLES["request"]


def test_added_field_without_default_is_a_missing_field(codec: Codec, tmp_path: Path) -> None:
    shutil.copy(SCHEMA_DIR / "request.v1.avsc", tmp_path)
    (tmp_path / "request.v2.avsc").write_text(json.dumps(_v2_request(with_default=False)))
    v2 = Codec(tmp_path)
    with pytest.raises(DecodeError, match=r"missing field .*priority.*no default"):
        v2.decode_dict(codec.encode(SAMPLES["request"]), "request")


# -- interop with the official avro package ---------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_official_avro_bytes_decode_with_our_codec(codec: Codec, name: str) -> None:
    schema = _avro_schema(name)
    event = SAMPLES[name]
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(dataclasses.asdict(event), avro.io.BinaryEncoder(buf))
    framed = MARKER + schema.fingerprint("CRC-64-AVRO") + buf.getvalue()
    assert codec.decode(framed, type(event)) == event
    assert framed == codec.encode(event)  # Avro binary is canonical: byte-identical


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_our_bytes_decode_with_official_avro(codec: Codec, name: str) -> None:
    schema = _avro_schema(name)
    event = SAMPLES[name]
    data = codec.encode(event)
    assert data[:2] == MARKER
    assert data[2:10] == schema.fingerprint("CRC-64-AVRO")
    body = io.BytesIO(data[10:])
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(body))
    assert body.tell() == len(data) - 10
    assert decoded == dataclasses.asdict(event)


# -- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than the 10-byte header"),
        (b"\xc3\x01\x00", "shorter than the 10-byte header"),
        (b'{"request_id": "json, not avro"}', "bad marker 0x7b22"),
        (b"\xc3\x02" + bytes(20), "bad marker 0xc302"),
        (
            MARKER + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x02",
            "unknown schema fingerprint 0x0102030405060708",
        ),
        ("not bytes", "expected bytes, got str"),
    ],
)
def test_garbage_is_rejected_with_a_reason(codec: Codec, data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode(data, r.Request)


def test_wrong_schema(codec: Codec) -> None:
    data = codec.encode(SAMPLES["routed"])
    with pytest.raises(DecodeError, match="expected Request, got Routed"):
        codec.decode(data, r.Request)
    with pytest.raises(DecodeError, match="expected Span, got Routed"):
        codec.decode_dict(data, "span")


def test_trailing_bytes(codec: Codec) -> None:
    data = codec.encode(SAMPLES["request"])
    with pytest.raises(DecodeError, match=r"trailing bytes: 1 byte\(s\) after the Request body"):
        codec.decode(data + b"\x00", r.Request)
    with pytest.raises(DecodeError, match="trailing bytes: 10 byte"):
        codec.decode(data + data[:10], r.Request)


def test_every_truncation_is_rejected(codec: Codec) -> None:
    data = codec.encode(SAMPLES["executed"])
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut], r.Executed)
    with pytest.raises(DecodeError, match="body does not match schema Executed v3: truncated"):
        codec.decode(data[:-3], r.Executed)


def test_body_of_wrong_types(codec: Codec) -> None:
    # A Request header in front of a body that is not a Request: strings with bad UTF-8.
    header = MARKER + codec.fingerprint("request")
    bad_utf8 = header + b"\x02" + b"\x04\xff\xfe" * 4
    with pytest.raises(DecodeError, match="invalid UTF-8"):
        codec.decode(bad_utf8, r.Request)
    negative_len = header + b"\x02" + b"\x03"
    with pytest.raises(DecodeError, match="negative length"):
        codec.decode(negative_len, r.Request)


def test_random_corruption_only_ever_raises_decode_error(codec: Codec) -> None:
    rng = random.Random(1234)
    data = codec.encode(SAMPLES["span"])
    rejected = 0
    for _ in range(3000):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(HEADER_LEN, len(bad))] = rng.randrange(256)
        try:
            codec.decode(bytes(bad), r.Span)
        except DecodeError:
            rejected += 1
    assert rejected > 1000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"created_ms": 1.5}, "created_ms"),
        ({"created_ms": "1"}, "created_ms"),
        ({"text": None}, "text"),
        ({"text": b"bytes"}, "text"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"context": [{"role": "user"}]}, "context .* expected record .*ContextMessage"),
        ({"unknown": "x"}, "unknown"),
    ],
)
def test_encode_rejects_nonconforming_records(codec: Codec, change: dict, reason: str) -> None:
    rec = dataclasses.asdict(SAMPLES["request"]) | change
    with pytest.raises(EncodeError, match=reason):
        codec.encode_dict("request", rec)


def test_encode_rejects_missing_field_and_int_overflow(codec: Codec) -> None:
    rec = dataclasses.asdict(SAMPLES["request"])
    del rec["user_id"]
    with pytest.raises(EncodeError, match=r"missing field\(s\) \['user_id'\]"):
        codec.encode_dict("request", rec)
    too_big = dataclasses.replace(SAMPLES["routed"], max_tokens=2**31)
    with pytest.raises(EncodeError, match="max_tokens"):
        codec.encode(too_big)
    with pytest.raises(KeyError, match="unknown schema 'nope'"):
        codec.encode_dict("nope", {})


# -- registry ---------------------------------------------------------------------------


def test_shared_codec_is_built_once_and_immutable() -> None:
    assert get_codec() is get_codec()
    with pytest.raises(RuntimeError, match="immutable"):
        get_codec().register(_v2_request(), version=2)


def test_register_new_schema_for_tests(codec: Codec) -> None:
    schema = {
        "type": "record",
        "name": "Ping",
        "namespace": "agentstream.events",
        "fields": [
            {"name": "schema_version", "type": "int", "default": 1},
            {"name": "n", "type": "long"},
        ],
    }
    fp = codec.register(schema)
    assert codec.fingerprint("ping") == fp
    data = codec.encode_dict("ping", {"n": -5})
    assert codec.decode_dict(data, "ping") == {"schema_version": 1, "n": -5}
    with pytest.raises(ValueError, match="first field must be"):
        codec.register({"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}]})


def test_bad_schema_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \*\.vN\.avsc"):
        Codec(tmp_path)
    (tmp_path / "Request.v1.avsc").write_text("{}")
    with pytest.raises(ValueError, match="bad schema file name"):
        Codec(tmp_path)

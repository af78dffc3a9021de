"""10,000 bad events among valid ones: each bad one dead-lettered with its reason (or answered
`error` when it is a well-formed request over a limit), each valid one answered once, no restart."""

from __future__ import annotations

import collections
import random
import time

import pytest
from aiokafka import AIOKafkaProducer

from streams.events.codecs import HEADER_LEN, get_codec
from streams.events.records import ContextMessage, DeadLetter, Request, now_ms
from tests.faults.load import count, report, settle
from tests.harness import Pipeline

pytestmark = pytest.mark.fault


def _request(rid: str, sid: str, text: str = "What are your opening hours?", **kw) -> Request:
    return Request(
        request_id=rid, session_id=sid, user_id="u-" + sid, text=text, created_ms=now_ms(), **kw
    )


def bad_event(rng: random.Random, i: int) -> tuple[str, bytes | None, bytes]:
    """(kind, key, value) of one malformed event, drawn by a seeded generator."""
    codec = get_codec()
    sid = f"fz{i % 97}"
    good = codec.encode(_request(f"bad-{i}", sid, "x" * rng.randrange(1, 60)))
    kind = rng.choice(
        [
            "random",
            "truncated",
            "fingerprint",
            "utf8",
            "empty_session",
            "wrong_key",
            "no_key",
            "empty",
        ]
    )
    if kind == "random":
        return kind, sid.encode(), rng.randbytes(rng.randrange(1, 300))
    if kind == "truncated":
        return kind, sid.encode(), good[: rng.randrange(1, len(good) - 1)]
    if kind == "fingerprint":
        return kind, sid.encode(), good[:2] + rng.randbytes(8) + good[HEADER_LEN:]
    if kind == "utf8":
        marker = b"Q" * 12
        raw = codec.encode(_request(f"bad-{i}", sid, "Q" * 12))
        return kind, sid.encode(), raw.replace(marker, b"\xff\xfe\xc3(" + b"Q" * 8, 1)
    if kind == "empty_session":
        return kind, b"", codec.encode(_request(f"bad-{i}", ""))
    if kind == "wrong_key":
        return kind, b"someone-else", codec.encode(_request(f"bad-{i}", sid))
    if kind == "no_key":
        return kind, None, codec.encode(_request(f"bad-{i}", sid))
    return kind, sid.encode(), b""


async def test_fuzz_bad_events_are_dead_lettered_and_valid_ones_answered_once(
    pipeline: Pipeline,
) -> None:
    pipeline.env_extra["AGENTSTREAM_SIM_LATENCY_MS"] = "20"
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)
    rng = random.Random(20261128)
    codec = get_codec()
    valid: set[str] = set()
    over_limit: set[str] = set()
    bad: collections.Counter[bytes] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.bootstrap, max_request_size=2_000_000, linger_ms=5
    )
    await producer.start()
    topic = pipeline.settings.topic("requests")
    started = time.monotonic()
    try:
        pending = []
        for i in range(10_000):
            kind, key, value = bad_event(rng, i)
            kinds[kind] += 1
            bad[value] += 1
            pending.append(await producer.send(topic, value, key=key))
            if i % 20 == 0:  # a valid request every 20 bad ones
                req = _request(f"ok-{i}", f"fz{i % 97}")
                valid.add(req.request_id)
                pending.append(
                    await producer.send(topic, codec.encode(req), key=req.session_id.encode())
                )
        # Well-formed but over the limits: answered `error`, never carried into state.
        big_context = _request(
            "big-context", "fz-big", context=[ContextMessage(role="user", content="x")] * 100_000
        )
        near_limit = _request("near-limit", "fz-big", text="y" * 1_000_000)
        for req in (big_context, near_limit):
            over_limit.add(req.request_id)
            pending.append(
                await producer.send(topic, codec.encode(req), key=req.session_id.encode())
            )
        for fut in pending:
            await fut
    finally:
        await producer.stop()

    responses, took = await settle(pipeline, valid | over_limit, timeout_s=240)
    figures = count(responses, valid | over_limit)
    dead = [codec.decode(m.value, DeadLetter) for m in await pipeline.read_topic("deadletter")]
    dead_by_value = collections.Counter(d.value for d in dead if d.topic == topic)
    figures.update(
        bad_events=sum(bad.values()),
        kinds=dict(kinds),
        dead_lettered=sum(dead_by_value.values()),
        bad_not_dead_lettered=sum(n for v, n in bad.items() if dead_by_value[v] < n),
        seconds=round(time.monotonic() - started, 1),
        answer_wait_s=round(took, 1),
    )
    report("fuzz", figures)

    assert figures["bad_not_dead_lettered"] == 0, figures
    assert figures["dead_lettered"] == figures["bad_events"], figures
    assert all(d.reason for d in dead), "every dead letter says why"
    assert figures["lost"] == 0 and figures["doubled"] == 0 and figures["unexpected"] == 0, figures
    by_id = {r.request_id: r for r in responses}
    assert all(by_id[rid].status == "ok" for rid in valid)
    for rid in over_limit:
        assert by_id[rid].status == "error" and "limit" in by_id[rid].reason, by_id[rid]
    assert worker.alive and "crashed" not in worker.log(), worker.log()[-3000:]

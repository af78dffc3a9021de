"""Human review on the real broker: a held refund waits, a decision made with `agentstream review`
resumes it on the worker (after a restart in between), and the session gets a follow-up answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from streams.events.codecs import get_codec
from streams.events.records import DeadLetter, HumanDecision, now_ms
from tests.harness import Pipeline

REFUND_250 = "I was charged twice, refund 250 dollars on order #77"


async def _cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streams.cli.main", "review", *args],
        env=pipeline.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_held_refunds_resume_after_approve_edit_or_reject(pipeline: Pipeline) -> None:
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)
    async with pipeline.client() as client:
        reqs = {}
        for verdict in ("approve", "edit", "reject"):
            sid = f"review-{verdict}-{uuid.uuid4().hex[:6]}"
            reqs[verdict] = await client.send(REFUND_250, session_id=sid, user_id=f"u-{verdict}")
        for req in reqs.values():
            resp = await client.response(req.request_id, timeout_s=60)
            assert resp.status == "escalated" and "$250.00" in resp.reason, resp
    assert not [e for e in pipeline.ledger() if e["tool"] == "issue_refund"], "held refunds wait"

    # The worker restarts between the escalation and the decision: the holds are in the changelog.
    worker.stop()
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)

    # The verifier stage publishes the escalations (the answer can reach the user first).
    for _ in range(60):
        listed = await _cli(pipeline, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        pending = {p["id"]: p for p in json.loads(listed.stdout)}
        if {r.request_id for r in reqs.values()} <= set(pending):
            break
        await asyncio.sleep(1.0)
    for req in reqs.values():
        item = pending[req.request_id]
        assert item["kind"] == "tool" and item["priority"] == "normal"
        assert item["held_action"] == {"tool": "issue_refund", "arguments": {"amount": 250, "order_id": "77"}}
        assert any("$250.00" in r for r in item["reasons"])

    async with pipeline.client() as client:
        decided = [
            await _cli(pipeline, "approve", reqs["approve"].request_id, "--reviewer", "alice"),
            await _cli(pipeline, "edit", reqs["edit"].request_id, "--args", '{"order_id": "77", "amount": 90}',
                       "--reviewer", "bob"),
            await _cli(pipeline, "reject", reqs["reject"].request_id, "--reviewer", "carol",
                       "--note", "no duplicate charge found"),
        ]
        assert all(d.returncode == 0 for d in decided), [d.stderr for d in decided]
        follow = {v: await client.response(r.request_id, timeout_s=60, follow_up=1) for v, r in reqs.items()}
    assert follow["approve"].status == "ok" and follow["edit"].status == "ok", follow
    assert follow["reject"].status == "ok" and "no duplicate charge found" in follow["reject"].answer, follow
    refunds = sorted(e["arguments"]["amount"] for e in pipeline.ledger() if e["tool"] == "issue_refund")
    assert refunds == [90.0, 250.0], "the approved refund ran once, the edited one with $90, the rejected not"

    # A second decision is refused: by the command, and by the worker when it reaches the topic.
    again = await _cli(pipeline, "reject", reqs["approve"].request_id, "--reviewer", "mallory")
    assert again.returncode != 0 and "already decided: approve by alice" in again.stderr
    late = HumanDecision(request_id=reqs["approve"].request_id, session_id=reqs["approve"].session_id,
                         reviewer="mallory", decision="approve", decided_ms=now_ms(), decision_id="late-1")
    await pipeline.produce_raw(pipeline.settings.topic("human-decisions"),
                               [(late.session_id.encode(), get_codec().encode(late))])
    for _ in range(60):
        dead = [get_codec().decode(m.value, DeadLetter) for m in await pipeline.read_topic("deadletter")]
        if any("already decided" in d.reason for d in dead):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"the late decision was not refused:\n{worker.log()[-3000:]}")
    await asyncio.sleep(1.0)
    refunds = sorted(e["arguments"]["amount"] for e in pipeline.ledger() if e["tool"] == "issue_refund")
    assert refunds == [90.0, 250.0], "a refused decision runs nothing"

    listed = json.loads((await _cli(pipeline, "list", "--json")).stdout)
    assert not {p["id"] for p in listed} & {r.request_id for r in reqs.values()}
    answers = [(r.request_id, r.follow_up) for r in await pipeline.responses()]
    ours = [a for a in answers if a[0] in {r.request_id for r in reqs.values()}]
    assert sorted(ours) == sorted({(r.request_id, n) for r in reqs.values() for n in (0, 1)})

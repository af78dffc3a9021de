"""Verifier wiring: executed answers in; one response per request id out, escalations aside."""

from __future__ import annotations

from streams import channels
from streams import sessions as state
from streams.app import app
from streams.envelope import decode_or_dead_letter, die, publish
from streams.records import Executed, now_ms
from streams.tables import sessions
from streams.verification.logic import verify


@app.agent(channels.executed, name="verifier")
async def verifier(stream):
    try:
        async for event in stream.events():
            ex = await decode_or_dead_letter(event, Executed)
            if ex is None:
                continue
            value, fresh = state.mark_responded(
                sessions.get(ex.session_id),
                ex.request_id,
                (ex.session_id, ex.user_id, ex.tenant_id),
                now_ms(),
            )
            if not fresh:
                continue  # a resumed task re-emitted an answer that already went out
            sessions[ex.session_id] = value
            verdict = verify(ex)
            if verdict.escalation:
                await publish(channels.escalations, verdict.escalation)
            await publish(channels.responses, verdict.response)
    except Exception as exc:
        die("verifier", exc)

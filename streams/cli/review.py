"""`agentstream review`: list pending escalations, approve, edit or reject one.

The queue is read from the escalations and human-decisions topics; a decision is published to
`agentstream.human-decisions.v1` keyed by session, and the worker that owns the session resumes
the held task. The worker is the authority: it refuses a second decision on the same escalation
(dead-lettered with the reason); this command refuses it first when the topics already show one.
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.cli import AppCommand, argument, option
from rich.table import Table

from streams.cli.output import console, fail
from streams.client import AgentStreamClient, ResponseTimeout
from streams.events.codecs import DecodeError, get_codec
from streams.events.records import DeadLetter, Escalation, HumanDecision, now_ms
from streams.kafka.app import app
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import DEADLETTER, ESCALATIONS, HUMAN_DECISIONS
from streams.stages.reviewing.queue import PendingReview, last_decision, pending_reviews

settings = app.agentstream_settings


async def _decoded(topic: str, cls: type[Any]) -> list[Any]:
    codec = get_codec()
    out = []
    for m in await read_all(settings.kafka_bootstrap_servers, settings.topic(topic)):
        try:
            out.append(codec.decode(m.value, cls))
        except DecodeError:
            continue
    return out


async def review_state() -> tuple[list[PendingReview], list[HumanDecision]]:
    escalations = await _decoded(ESCALATIONS, Escalation)
    decisions = await _decoded(HUMAN_DECISIONS, HumanDecision)
    return pending_reviews(escalations, decisions), decisions


def _as_json(p: PendingReview) -> dict[str, Any]:
    e = p.escalation
    return {
        "id": e.request_id,
        "kind": p.kind,
        "priority": e.priority,
        "session_id": e.session_id,
        "user_id": e.user_id,
        "tenant_id": e.tenant_id,
        "domain": e.domain,
        "reasons": e.reasons,
        "held_action": json.loads(e.held_action) if e.held_action else None,
        "draft_answer": e.draft_answer,
        "escalated_ms": e.escalated_ms,
        "follow_up": e.follow_up,
    }


def _print_pending(pending: list[PendingReview]) -> None:
    table = Table(title=f"pending reviews ({len(pending)})")
    for col in ("id", "priority", "waiting", "domain", "user"):
        table.add_column(col, no_wrap=True)
    table.add_column("held / draft", overflow="fold")
    table.add_column("reasons", overflow="fold")
    now = now_ms()
    for p in pending:
        e = p.escalation
        waiting = f"{(now - e.escalated_ms) / 60_000:.0f} min"
        held = e.held_action or (e.draft_answer[:80] if e.draft_answer else "(no draft)")
        colour = "red" if e.priority == "high" else "yellow"
        table.add_row(e.request_id, f"[{colour}]{e.priority}", waiting, e.domain, e.user_id, held, "; ".join(e.reasons))
    console.print(table)


class DecisionInvalid(ValueError):
    """A decision that cannot be published as asked (the message says what to give instead)."""


def _checked_arguments(text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecisionInvalid(f"--args is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DecisionInvalid("--args must be a JSON object, e.g. '{\"order_id\": \"77\", \"amount\": 90}'")
    return json.dumps(value, sort_keys=True)


@app.command(
    argument("action", type=click.Choice(["list", "approve", "edit", "reject"])),
    argument("request_id", required=False),
    option("--args", "edited_args", default=None, help="edit: the tool call's arguments as a JSON object."),
    option("--answer", default=None, help="edit of a held answer: the answer to give instead."),
    option("--note", default="", help="Why; shown to the model (and the user) on reject."),
    option("--reviewer", default=None, help="Who decides (default: the login name)."),
    option("--wait", "wait_s", type=float, default=0.0, help="Seconds to wait for the follow-up answer."),
    option("--json", "as_json", is_flag=True, help="Machine-readable output."),
)
async def review(
    self: AppCommand,
    action: str,
    request_id: str | None,
    edited_args: str | None,
    answer: str | None,
    note: str,
    reviewer: str | None,
    wait_s: float,
    as_json: bool,
) -> None:
    """Human review: `list` the pending escalations, or `approve|edit|reject ID`."""
    try:
        pending, decisions = await review_state()
    except KafkaError as exc:
        fail(f"cannot talk to Kafka at {settings.kafka_bootstrap_servers}: {exc}")
    if action == "list":
        if as_json:
            click.echo(json.dumps([_as_json(p) for p in pending], ensure_ascii=False))
        else:
            _print_pending(pending)
        return
    if not request_id:
        fail(f"review {action} needs the id of a pending escalation (see `agentstream review list`)")
    item = next((p for p in pending if p.request_id == request_id), None)
    if item is None:
        prior = last_decision(decisions, request_id)
        if prior is not None:
            when = datetime.fromtimestamp(prior.decided_ms / 1000, UTC).isoformat(timespec="seconds")
            fail(f"escalation {request_id} was already decided: {prior.decision} by {prior.reviewer} at {when}")
        fail(f"no pending escalation {request_id!r} (see `agentstream review list`)")
    try:
        decision = build_decision(item, action, edited_args, answer, note, reviewer or getpass.getuser())
    except DecisionInvalid as exc:
        fail(str(exc))
    follow_up = item.escalation.follow_up + 1
    try:
        async with AgentStreamClient.from_settings(settings) as client:
            await publish_decision(decision)
            if wait_s <= 0:
                console.print(f"{action} of {request_id} by {decision.reviewer} published; the task resumes on its worker")
                return
            try:
                resp = await client.response(request_id, wait_s, follow_up=follow_up)
            except ResponseTimeout:
                refused = await refusal_of(decision.decision_id)
                if refused:
                    fail(f"the worker refused the decision: {refused}")
                fail(f"decision published, but no follow-up answer within {wait_s:.0f}s")
    except KafkaError as exc:
        fail(f"cannot talk to Kafka at {settings.kafka_bootstrap_servers}: {exc}")
    if as_json:
        click.echo(json.dumps(asdict(resp), ensure_ascii=False))
    else:
        console.print(f"follow-up answer: [bold]{resp.status}[/] {resp.reason}\n{resp.answer}")


async def refusal_of(decision_id: str) -> str | None:
    """The reason the worker dead-lettered this decision, if it did."""
    codec = get_codec()
    for m in await read_all(settings.kafka_bootstrap_servers, settings.topic(DEADLETTER)):
        try:
            dead = codec.decode(m.value, DeadLetter)
            if dead.reason.startswith("human decision refused") and codec.decode(dead.value, HumanDecision).decision_id == decision_id:
                return dead.reason
        except DecodeError:
            continue
    return None


def build_decision(
    item: PendingReview, action: str, edited_args: str | None, answer: str | None, note: str, reviewer: str
) -> HumanDecision:
    """The decision record for `item`, or DecisionInvalid; shared by this command and the console
    so both publish exactly the same thing."""
    if action not in ("approve", "edit", "reject"):
        raise DecisionInvalid(f"unknown decision {action!r}: approve, edit or reject")
    arguments = ""
    edited_answer = ""
    if action == "edit":
        if item.kind == "tool":
            if edited_args is None:
                raise DecisionInvalid("edit of a held tool call needs --args with the arguments to run it with")
            arguments = _checked_arguments(edited_args)
        else:
            if not (answer or "").strip():
                raise DecisionInvalid("edit of a held answer needs --answer with the answer to give")
            edited_answer = str(answer)
    elif action == "approve" and item.kind == "answer" and not item.escalation.draft_answer.strip():
        raise DecisionInvalid("there is no draft answer to approve: use `edit --answer TEXT`, or reject")
    e = item.escalation
    return HumanDecision(
        request_id=e.request_id,
        session_id=e.session_id,
        reviewer=reviewer,
        decision=action,
        edited_answer=edited_answer,
        note=note,
        decided_ms=max(now_ms(), e.escalated_ms + 1),
        decision_id=uuid.uuid4().hex,
        edited_arguments=arguments,
        follow_up=e.follow_up,
    )


async def publish_decision(decision: HumanDecision) -> None:
    """Publish to the human-decisions topic keyed by session (the worker owning it resumes the task)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(HUMAN_DECISIONS), get_codec().encode(decision), key=decision.session_id.encode()
        )
    finally:
        await producer.stop()

"""`agentstream rollout`: show, set, pause, resume or promote the candidate config.

A change is one record on the compacted `agentstream.control.v1` topic (key `rollout`); every
worker follows that topic and applies the latest record within a second, without a restart.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import replace
from datetime import UTC, datetime

import click
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.cli import AppCommand, argument, option

from streams.cli.output import console, fail
from streams.config.pipeline import PipelineConfig, load_config
from streams.control.rollout import ROLLOUT, candidate_share
from streams.events.codecs import DecodeError, get_codec
from streams.events.records import Control, now_ms
from streams.kafka.app import app
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import CONTROL

settings = app.agentstream_settings


async def current_rollout() -> Control | None:
    """The latest rollout record on the control topic (None: the config file decides)."""
    latest = None
    for m in await read_all(settings.kafka_bootstrap_servers, settings.topic(CONTROL)):
        try:
            control = get_codec().decode(m.value, Control)
        except DecodeError:
            continue
        if control.name == ROLLOUT:
            latest = control
    return latest


def rollout_summary(cfg: PipelineConfig, control: Control | None) -> dict[str, object]:
    return {
        "active_version": cfg.version,
        "candidate_version": cfg.candidate.version if cfg.candidate else None,
        "candidate_percent": candidate_share(cfg, control),
        "paused": bool(control and control.paused),
        "promoted": bool(control and control.promoted),
        "set_by": control.actor if control else "config file",
        "reason": control.reason if control else "",
        "updated": datetime.fromtimestamp(control.updated_ms / 1000, UTC).isoformat(timespec="seconds") if control else None,
    }


@app.command(
    argument("action", type=click.Choice(["show", "set", "pause", "resume", "promote"])),
    argument("percent", type=click.IntRange(0, 100), required=False),
    option("--candidate", "candidate_version", default=None, help="Candidate config version (default: the config file's)."),
    option("--reason", default="", help="Why; kept with the change."),
    option("--json", "as_json", is_flag=True, help="Print the resulting state as JSON."),
)
async def rollout(
    self: AppCommand, action: str, percent: int | None, candidate_version: str | None, reason: str, as_json: bool
) -> None:
    """Gradual rollout of the config file's `[candidate]`: `set PERCENT`, `pause`, `resume`, `promote`."""
    cfg = load_config(settings.config_file)
    try:
        control = await current_rollout()
    except KafkaError as exc:
        fail(f"cannot talk to Kafka at {settings.kafka_bootstrap_servers}: {exc}")
    if action != "show":
        control = _changed(cfg, control, action, percent, candidate_version, reason)
        await publish_control(control)
    summary = rollout_summary(cfg, control)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        console.print_json(json.dumps(summary))


def _changed(
    cfg: PipelineConfig, control: Control | None, action: str, percent: int | None, version: str | None, reason: str
) -> Control:
    if cfg.candidate is None:
        fail(f"{settings.config_file or 'the config file'} names no [candidate] to roll out")
    if version is not None and version != cfg.candidate.version:
        fail(f"unknown candidate {version!r}: the config file's candidate is {cfg.candidate.version!r}")
    base = control or Control(name=ROLLOUT, percent=cfg.router.rollout_candidate_percent, updated_ms=0)
    stamped = replace(
        base, candidate_version=cfg.candidate.version, reason=reason, actor=getpass.getuser(), updated_ms=now_ms()
    )
    if action == "set":
        if percent is None:
            fail("rollout set needs a PERCENT (0-100)")
        return replace(stamped, percent=percent, paused=False, promoted=False)
    if action == "pause":
        return replace(stamped, paused=True)
    if action == "resume":
        return replace(stamped, paused=False)
    return replace(stamped, percent=100, paused=False, promoted=True)


async def publish_control(control: Control) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(CONTROL), get_codec().encode(control), key=control.name.encode(), partition=0
        )
    finally:
        await producer.stop()

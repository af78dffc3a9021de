"""Follows the compacted control topic in every worker: rollout changes apply within a second,
without a restart. Each worker reads the whole topic itself (no consumer group): every worker
must see every record, and the latest record per key is the state."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.events.codecs import DecodeError, get_codec
from streams.events.records import Control

log = logging.getLogger(__name__)


class ControlWatcher:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.latest: dict[str, Control] = {}
        self.caught_up = asyncio.Event()  # set once the topic was read to its end at start

    def get(self, name: str) -> Control | None:
        return self.latest.get(name)

    async def wait_caught_up(self, timeout_s: float = 30.0) -> None:
        """Before the first routing decision: the state as of start, not the config file's."""
        if not self.caught_up.is_set():
            try:
                await asyncio.wait_for(self.caught_up.wait(), timeout_s)
            except TimeoutError:
                log.warning("control topic %s not read within %.0fs; routing with what is known", self.topic, timeout_s)
                self.caught_up.set()

    async def follow(self) -> None:
        """Reads forever; reconnects after a broker outage (the state stays as last read)."""
        while True:
            try:
                await self._follow_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone: keep serving with the last known state
                log.warning("control topic %s: %r; retrying", self.topic, exc)
                await asyncio.sleep(1.0)

    async def _follow_once(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while True:
                # Checked before waiting for more: an empty topic (the usual case) is caught up
                # at once, where the first wait held the worker's first request for 0.3 s.
                if not self.caught_up.is_set() and await consumer.position(tp) >= end:
                    self.caught_up.set()
                for msgs in (await consumer.getmany(tp, timeout_ms=300)).values():
                    for m in msgs:
                        self._apply(m.value)
        finally:
            await consumer.stop()

    def _apply(self, value: bytes | None) -> None:
        """The latest record per name (in offset order, the partition's order) is the state."""
        if value is None:
            return
        try:
            control = get_codec().decode(value, Control)
        except DecodeError as exc:
            log.error("undecodable control record skipped: %s", exc)
            return
        self.latest[control.name] = control
        log.warning(
            "control %s: candidate %s at %d%% (paused=%s promoted=%s) by %s: %s",
            control.name, control.candidate_version or "(config's)", control.percent,
            control.paused, control.promoted, control.actor, control.reason,
        )

"""The producer API for services: publish a request, await its response.

Plain aiokafka rather than the Faust app: a service that talks to users should not need a worker's
machinery. Responses are read (committed only) from the tail of the responses topic without a
consumer group; the pipeline publishes exactly one response per request id.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.events.codecs import DecodeError, get_codec
from streams.events.records import ContextMessage, Request, Response, now_ms
from streams.kafka import topics


class ResponseTimeout(TimeoutError):
    pass


@dataclass
class AgentStreamClient:
    bootstrap_servers: str
    requests_topic: str
    responses_topic: str
    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _waiters: dict[str, asyncio.Future[Response]] = field(default_factory=dict)
    _arrived: dict[str, Response] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: object) -> AgentStreamClient:
        return cls(
            settings.kafka_bootstrap_servers,  # type: ignore[attr-defined]
            settings.topic(topics.REQUESTS),  # type: ignore[attr-defined]
            settings.topic(topics.RESPONSES),  # type: ignore[attr-defined]
        )

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=2
        )
        await self._producer.start()
        # Responses are published in Kafka transactions: read only committed ones.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.responses_topic)
        if parts is None:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.responses_topic) or set()
        if not parts:
            raise RuntimeError(f"topic {self.responses_topic} does not exist: start a worker first")
        tps = [TopicPartition(self.responses_topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        # Only responses to requests sent from now on matter: start at the current end.
        for tp, offset in (await self._consumer.end_offsets(tps)).items():
            self._consumer.seek(tp, offset)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()

    async def __aenter__(self) -> AgentStreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _read(self) -> None:
        assert self._consumer
        codec = get_codec()
        async for msg in self._consumer:
            try:
                resp = codec.decode(msg.value, Response)
            except DecodeError:
                continue
            key = resp.answer_key()
            if key in self._arrived:
                continue
            self._arrived[key] = resp
            fut = self._waiters.pop(key, None)
            if fut and not fut.done():
                fut.set_result(resp)

    async def send(
        self,
        text: str,
        *,
        session_id: str,
        user_id: str,
        tenant_id: str = "default",
        request_id: str | None = None,
        context: list[ContextMessage] | None = None,
    ) -> Request:
        assert self._producer, "call start() first"
        req = Request(
            request_id=request_id or uuid.uuid4().hex,
            session_id=session_id,
            user_id=user_id,
            tenant_id=tenant_id,
            text=text,
            context=context or [],
            metadata={},
            created_ms=now_ms(),
        )
        self._waiters.setdefault(req.request_id, asyncio.get_running_loop().create_future())
        await self._producer.send_and_wait(
            self.requests_topic, get_codec().encode(req), key=session_id.encode()
        )
        return req

    async def response(self, request_id: str, timeout_s: float = 60.0, follow_up: int = 0) -> Response:
        """The request's answer; with `follow_up=n`, the answer after the n-th human decision."""
        key = request_id if not follow_up else f"{request_id}#{follow_up}"
        if key in self._arrived:
            return self._arrived[key]
        fut = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            raise ResponseTimeout(
                f"no response for request {request_id} within {timeout_s:.0f}s "
                "(is a worker running? `agentstream worker`)"
            ) from None

    async def ask(self, text: str, *, session_id: str, user_id: str, timeout_s: float = 60.0) -> Response:
        req = await self.send(text, session_id=session_id, user_id=user_id)
        return await self.response(req.request_id, timeout_s)

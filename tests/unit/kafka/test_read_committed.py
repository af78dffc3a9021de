"""The worker's consumer reads committed data only: an aborted responder transaction (a
responder killed mid-transaction) must not reach the monitor, which would count its answers
and then count them again when the successor sends them."""

from __future__ import annotations

from streams.config.settings import get_settings
from streams.kafka.app import _read_committed, create_app


async def test_the_worker_consumer_is_created_read_committed() -> None:
    app = create_app(get_settings())
    thread = app.consumer._thread
    before = thread._create_worker_consumer(app.consumer.transport)
    assert before._isolation_level == "read_uncommitted", "Faust's own default outside exactly-once"
    _read_committed(app.consumer)
    after = thread._create_worker_consumer(app.consumer.transport)
    assert after._isolation_level == "read_committed"
    assert after._group_id == before._group_id == app.conf.id, "otherwise the consumer Faust would build"

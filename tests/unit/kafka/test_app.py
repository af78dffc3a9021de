"""What the app sets up around Faust: a consumer that reads committed data only (and parks
fetches briefly), and the
partitions this worker owns read off the current assignment."""

from __future__ import annotations

from faust.assignor.client_assignment import ClientAssignment

from streams.config.settings import get_settings
from streams.kafka.app import FETCH_MAX_WAIT_MS, _tune_consumer, active_partitions, create_app


async def test_the_worker_consumer_is_created_read_committed() -> None:
    """An aborted responder transaction (a responder killed mid-transaction) must not reach the
    monitor, which would count its answers and then again when the successor sends them."""
    app = create_app(get_settings())
    thread = app.consumer._thread
    before = thread._create_worker_consumer(app.consumer.transport)
    assert before._isolation_level == "read_uncommitted", "Faust's own default outside exactly-once"
    assert before._fetch_max_wait_ms == 1500, "Faust's own, which delays each recovery step"
    _tune_consumer(app.consumer)
    after = thread._create_worker_consumer(app.consumer.transport)
    assert after._isolation_level == "read_committed"
    assert after._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    assert after._group_id == before._group_id == app.conf.id, "otherwise the consumer Faust would build"


def test_active_partitions_follow_the_assignment_as_it_is_replaced() -> None:
    app = create_app(get_settings())
    assert list(active_partitions(app, "t")) == [], "nothing before the first assignment"
    app.assignor._assignment = ClientAssignment(actives={"t": [1, 3], "u": [0]}, standbys={"t": [2]})
    assert sorted(active_partitions(app, "t")) == [1, 3], "standbys are not owned"
    assert {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == "t"} == {1, 3}
    app.assignor._assignment = ClientAssignment(actives={"u": [0]}, standbys={})
    assert list(active_partitions(app, "t")) == []

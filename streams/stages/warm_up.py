"""Builds, while the worker joins its group, what its first request would otherwise build.

The stages build their pieces on first use (nothing heavy at import): the screening rules
(~90 ms to compile), libphonenumber's metadata for the redactor, the Avro schemas, the LLM
provider, the tracer and the tool ledger's database. Paid by the first request, they made
the first answer after a start or a restart 0.7-1.2 s; built here, they overlap the group
join and the table recovery, where the event loop mostly waits on the broker. Then what the
worker built is frozen out of the garbage collector's way (`heap.settle`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from streams.events.codecs import get_codec
from streams.kafka import heap
from streams.kafka.app import app
from streams.stages.routing.logic import screen

log = logging.getLogger(__name__)

# A phone number of each region the redactor knows, an address and an IBAN: every recognizer
# (and each region's phone metadata) runs once.
_SAMPLE = (
    "call +1 415 555 0100, 020 7946 0958, 01 42 68 53 00, 030 901820 or 912 345 678;"
    " mail ana@example.com, IBAN GB82 WEST 1234 5698 7654 32, order 1234"
)


async def warm_up() -> None:
    started = time.perf_counter()
    try:
        services = app.services
        get_codec()
        await asyncio.sleep(0)  # one piece per turn of the loop: the join goes on between
        screen(_SAMPLE, services.pipeline_config)
        await asyncio.sleep(0)
        services.redactor.findings(_SAMPLE)
        await asyncio.sleep(0)
        services.tracer  # noqa: B018  # built on first use
        services.provider  # noqa: B018
        await services.tool_ledger.open()
    except Exception as exc:  # the first request builds what is missing, as before
        log.warning("warm-up failed: %r", exc)
        return
    built = time.perf_counter()
    if not app.agentstream_settings.gc_freeze:
        log.info("warmed up in %.0f ms", (built - started) * 1000)
        return
    frozen = heap.settle()
    log.info(
        "warmed up in %.0f ms; %d objects frozen in %.0f ms",
        (built - started) * 1000, frozen, (time.perf_counter() - built) * 1000,
    )

"""The worker's garbage collector: what the worker built at start is frozen, and the young
generation is collected less often.

A worker holds ~110,000 objects the collector tracks once it is warm (functions, classes and
tuples of the modules it imported, almost all of them for its whole life). Every full
collection walked all of them: 80-110 ms with the event loop stopped, seven to fourteen times
per 3,000 requests, and collections in all took ~0.15 ms of CPU per request with tracing off,
~0.33 ms with it on (its spans allocate more). Frozen after the warm-up, they are never walked
again, and with a young generation of 10,000 objects instead of 700 most of a request's cycles
die before the first collection (bench/README.md, tenth session).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Allocations (minus deallocations) of tracked objects between two young collections; the
interpreter's default is 700."""


def settle() -> int:
    """Collects once, moves every surviving object to the permanent generation, and raises the
    young generation's threshold; returns how many objects were frozen. Call it once, when the
    worker has built what it keeps (`warm_up`)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    return gc.get_freeze_count()

"""Loaded by a worker that `bench_gc.py` starts with this folder on PYTHONPATH: times every
garbage collection (gc.callbacks) and writes the totals to $GC_PROBE_OUT once a second. A file
named $GC_PROBE_OUT.reset restarts the longest-pause figure."""

import gc
import json
import os
import threading
import time

_OUT = os.environ.get("GC_PROBE_OUT", "")

if _OUT:
    _started = [0.0]
    _seconds = [0.0, 0.0, 0.0]
    _count = [0, 0, 0]
    _longest = [0.0]

    def _timed(phase: str, info: dict) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        took = time.perf_counter() - _started[0]
        _seconds[info["generation"]] += took
        _count[info["generation"]] += 1
        _longest[0] = max(_longest[0], took)

    def _report() -> None:
        while True:
            time.sleep(1.0)
            if os.path.exists(_OUT + ".reset"):
                _longest[0] = 0.0
                os.remove(_OUT + ".reset")
            state = {"seconds": _seconds, "count": _count, "longest_s": _longest[0], "tracked": len(gc.get_objects()),
                     "frozen": gc.get_freeze_count()}
            with open(_OUT + ".tmp", "w") as f:
                json.dump(state, f)
            os.replace(_OUT + ".tmp", _OUT)

    gc.callbacks.append(_timed)
    threading.Thread(target=_report, daemon=True, name="gc-probe").start()

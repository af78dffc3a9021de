"""Session value encoding: the typed session as the `sessions` table encodes and decodes it
(`streams.state.sessions.dump` / `load`, msgspec with validation) against the same value as an
untyped dict through orjson (the table's codec before typed state) and the standard json.

    python bench/bench_state_codec.py --rounds 20000

A session with six finished tasks, built with the state functions; prints one JSON line with
microseconds per encode and decode, and the ratios to the standard library (the baseline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.state import sessions as state


def session() -> state.Session:
    s = None
    for i in range(6):
        routed = {"request_id": f"r{i}", "session_id": "s1", "user_id": "u1", "tenant_id": "t1",
                  "text": "Where is my order 1234? " * 5, "context": [], "created_ms": 1}
        s, _ = state.enqueue(s, routed, now=i)
        s = state.finish_task(s, f"r{i}", "ok", "Your order ships tomorrow. " * 8, None, i)
    assert s is not None
    return s


def per_call_us(fn: object, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20000)
    rounds = parser.parse_args().rounds
    s = session()
    raw = state.dump(s)
    plain = orjson.loads(raw)
    figures = {
        "json_encode_us": per_call_us(lambda: json.dumps(plain, ensure_ascii=False).encode(), rounds),
        "orjson_encode_us": per_call_us(lambda: orjson.dumps(plain), rounds),
        "typed_encode_us": per_call_us(lambda: state.dump(s), rounds),
        "json_decode_us": per_call_us(lambda: json.loads(raw), rounds),
        "orjson_decode_us": per_call_us(lambda: orjson.loads(raw), rounds),
        "typed_decode_us": per_call_us(lambda: state.load(raw), rounds),
    }
    print(json.dumps({
        "bench": "state_codec", "session_bytes": len(raw), "rounds": rounds,
        **{k: round(v, 1) for k, v in figures.items()},
        "encode_speedup": round(figures["json_encode_us"] / figures["typed_encode_us"], 2),
        "decode_speedup": round(figures["json_decode_us"] / figures["typed_decode_us"], 2),
        "typed_over_orjson_decode": round(figures["typed_decode_us"] / figures["orjson_decode_us"], 2),
    }))


if __name__ == "__main__":
    main()

"""What the runner and the stages need of a session store, and that store in plain memory.

The Faust table (`streams.state.tables.SessionTable`) and `MemorySessions` (unit tests, tools)
behave alike: each session is kept as the JSON bytes its changelog record carries, a read
decodes a fresh value the caller may change, and a write encodes it once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Protocol

from streams.state.model import Session
from streams.state.sessions import dump, load

# `dump` writes a session's numeric fields and its queue before any text (`model.Session`), so
# the first `"queue":` and `"expires_ms":` in its bytes are the session's own, never a user's.
_DUMPED = b'{"expires_ms":'
_QUEUE = b'"queue":'
_EXPIRES = re.compile(rb'^\{"expires_ms":(\d+),')
_EPOCH = re.compile(rb'^\{"expires_ms":\d+,"last_activity_ms":\d+,"epoch":(\d+),')


class SessionStore(Protocol):
    def __getitem__(self, key: str) -> Session: ...

    def __setitem__(self, key: str, value: Session) -> None: ...

    def __delitem__(self, key: str) -> None: ...

    def get(self, key: str, default: Session | None = None) -> Session | None: ...

    def raw_items(self) -> list[tuple[str, bytes]]: ...

    def raw(self, key: str) -> bytes | None: ...


def with_queue(store: SessionStore) -> Iterator[tuple[str, Session]]:
    """Sessions with queued work (decoded); the others are passed over on their bytes."""
    for sid, raw in store.raw_items():
        if raw and not _empty_queue(raw):
            s = load(raw)
            if s.queue:
                yield sid, s


def _empty_queue(raw: bytes) -> bool:
    if not raw.startswith(_DUMPED):
        return False  # written before `dump` put the queue first: decoded to check
    at = raw.find(_QUEUE)
    return at >= 0 and raw.startswith(b"[]", at + len(_QUEUE))


def idle_before(store: SessionStore, now_ms: int) -> Iterator[tuple[str, Session]]:
    """Sessions whose `expires_ms` has passed (decoded); the others are passed over on their bytes."""
    for sid, raw in store.raw_items():
        if not raw:
            continue
        m = _EXPIRES.match(raw)
        if m is None or int(m[1]) < now_ms:  # no match: not written by `dump`, so decoded
            yield sid, load(raw)


def epoch_of(raw: bytes) -> int:
    """The owner epoch of an encoded session, read off its first bytes (a table rebuild checks
    it for every changelog record of a key it already has, see `tables.SessionKeyedTable`)."""
    m = _EPOCH.match(raw)
    return int(m[1]) if m else load(raw).epoch


def is_stale(current: bytes | None, incoming: bytes | None) -> bool:
    """A changelog write from an older owner epoch than the value already applied (a zombie's);
    a first value or a delete is always applied."""
    if not current or not incoming:
        return False
    return epoch_of(incoming) < epoch_of(current)


def digest_of(items: Iterable[tuple[str, bytes]]) -> str:
    """A fingerprint of (session id, encoded value) pairs: a rebuilt table's is logged, and a
    test computes the same over the latest changelog record of each key."""
    h = hashlib.sha256()
    for key, raw in sorted(items):
        h.update(key.encode() + b"\0" + (raw or b"") + b"\n")
    return h.hexdigest()[:16]


class MemorySessions:
    """A dict of session id -> encoded session, with the table's read and write semantics."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def __getitem__(self, key: str) -> Session:
        return load(self.data[key])

    def __setitem__(self, key: str, value: Session) -> None:
        self.data[key] = dump(value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str, default: Session | None = None) -> Session | None:
        raw = self.data.get(key)
        return default if raw is None else load(raw)

    def raw_items(self) -> list[tuple[str, bytes]]:
        return list(self.data.items())

    def raw(self, key: str) -> bytes | None:
        return self.data.get(key)

"""Budget reservations and settlements: ceilings per window, concurrency, idempotence."""

from datetime import UTC, datetime

import pytest

from streams.stages.budgets import ledger
from streams.stages.budgets.ledger import Ceiling, period, usage, window_key

T0 = int(datetime(2026, 11, 28, 16, 30, tzinfo=UTC).timestamp() * 1000)
USER_DAY = Ceiling("user", "day", max_tokens=1_000)
RECORDS: dict[str, dict] = {}  # request id -> its record, as the table keeps them


@pytest.fixture(autouse=True)
def _fresh_records() -> None:
    RECORDS.clear()


def reserve(b, ceilings, tenant, user, rid, tokens, cost, now, cheaper=None):
    b, RECORDS[rid], admission = ledger.reserve(b, RECORDS.get(rid), ceilings, tenant, user, rid, tokens, cost, now, cheaper)
    return b, admission


def settle(b, ceilings, tenant, user, rid, settle_id, tokens, cost, now):
    b, RECORDS[rid], applied = ledger.settle(b, RECORDS.get(rid), ceilings, tenant, user, rid, settle_id, tokens, cost, now)
    return b, applied
TENANT_HOUR = Ceiling("tenant", "hour", max_cost_usd=1.0)


def test_calendar_periods_in_utc() -> None:
    assert period("hour", T0)[0] == "2026-11-28T16" and period("hour", T0)[1].hour == 17
    assert period("day", T0)[0] == "2026-11-28" and period("day", T0)[1].day == 29
    assert period("month", T0)[0] == "2026-11" and period("month", T0)[1].month == 12
    dec = int(datetime(2026, 12, 31, 23, 59, tzinfo=UTC).timestamp() * 1000)
    assert period("month", dec)[1] == datetime(2027, 1, 1, tzinfo=UTC)


def test_reservations_stop_concurrent_requests_from_overshooting_together() -> None:
    b = None
    admitted = 0
    for i in range(50):  # all in flight at once: nothing settled yet
        b, a = reserve(b, (USER_DAY,), "t", "u", f"r{i}", 100, 0.0, T0)
        admitted += a.admitted
    assert admitted == 10
    _, denied = reserve(b, (USER_DAY,), "t", "u", "r99", 100, 0.0, T0)
    assert not denied.admitted and denied.reason == "user daily budget of 1,000 tokens reached; resets at 2026-11-29T00:00Z"
    _, other_user = reserve(b, (USER_DAY,), "t", "someone-else", "r100", 100, 0.0, T0)
    assert other_user.admitted


def test_settling_counts_the_actual_usage_and_releases_the_rest() -> None:
    b, _ = reserve(None, (USER_DAY,), "t", "u", "r1", 400, 0.0, T0)
    b, applied = settle(b, (USER_DAY,), "t", "u", "r1", "r1#0", 150, 0.0, T0 + 10)
    key = window_key(USER_DAY, "t", "u", T0)
    assert applied and usage(b, key)["tokens"] == 150 and usage(b, key)["held_tokens"] == 0
    again, applied = settle(b, (USER_DAY,), "t", "u", "r1", "r1#0", 150, 0.0, T0 + 20)
    assert not applied and usage(again, key)["tokens"] == 150, "a redelivered settlement counts once"
    b, _ = settle(b, (USER_DAY,), "t", "u", "r1", "r1#1", 50, 0.0, T0 + 30)  # the follow-up after review
    assert usage(b, key)["tokens"] == 200


def charge(b, rid, settle_id, charge_id, tokens, cost, now):
    b, RECORDS[rid], applied = ledger.charge(
        b, RECORDS.get(rid), (USER_DAY,), "t", "u", rid, settle_id, charge_id, tokens, cost, now
    )
    return b, applied


def test_each_llm_call_is_charged_at_once_and_the_settlement_counts_only_the_rest() -> None:
    key = window_key(USER_DAY, "t", "u", T0)
    b, _ = reserve(None, (USER_DAY,), "t", "u", "r1", 400, 0.0, T0)
    b, applied = charge(b, "r1", "r1#0", "r1#0@0", 120, 0.0, T0 + 1)
    assert applied and usage(b, key)["tokens"] == 120 and usage(b, key)["held_tokens"] == 280
    b, again = charge(b, "r1", "r1#0", "r1#0@0", 120, 0.0, T0 + 2)
    assert not again and usage(b, key)["tokens"] == 120, "a redelivered charge counts once"
    # The second call's charge was lost in a crash: the settlement (all recorded steps: 120 + 90)
    # counts the 90 it did not see, and releases the rest of the hold.
    b, _ = settle(b, (USER_DAY,), "t", "u", "r1", "r1#0", 210, 0.0, T0 + 3)
    assert usage(b, key)["tokens"] == 210 and usage(b, key)["held_tokens"] == 0
    b, late = charge(b, "r1", "r1#0", "r1#0@2", 90, 0.0, T0 + 4)
    assert not late and usage(b, key)["tokens"] == 210, "a charge after its settlement is already counted"


def test_a_call_that_used_more_than_reserved_is_counted_in_full_and_blocks_the_next_request() -> None:
    key = window_key(USER_DAY, "t", "u", T0)
    b, _ = reserve(None, (USER_DAY,), "t", "u", "r1", 100, 0.0, T0)
    b, _ = charge(b, "r1", "r1#0", "r1#0@0", 950, 0.0, T0 + 1)
    assert usage(b, key)["tokens"] == 950 and usage(b, key)["held_tokens"] == 0
    _, next_one = reserve(b, (USER_DAY,), "t", "u", "r2", 100, 0.0, T0 + 2)
    assert not next_one.admitted, "the charge is visible before the first task ends"


def test_a_redelivered_reservation_gets_the_same_decision_and_holds_once() -> None:
    b, first = reserve(None, (USER_DAY,), "t", "u", "r1", 600, 0.0, T0)
    b, again = reserve(b, (USER_DAY,), "t", "u", "r1", 600, 0.0, T0 + 5)
    assert first == again and usage(b, window_key(USER_DAY, "t", "u", T0))["held_tokens"] == 600


def test_cost_ceilings_and_the_next_window() -> None:
    b, a = reserve(None, (TENANT_HOUR,), "t", "u", "r1", 0, 0.9, T0)
    assert a.admitted
    b, a = reserve(b, (TENANT_HOUR,), "t", "u2", "r2", 0, 0.2, T0)
    assert not a.admitted and "tenant hourly budget of $1.00" in a.reason and "17:00Z" in a.reason
    b, a = reserve(b, (TENANT_HOUR,), "t", "u2", "r3", 0, 0.2, T0 + 3_600_000)
    assert a.admitted, "a new hour, a new budget"


def test_a_reservation_never_settled_is_released_after_its_ttl() -> None:
    b, _ = reserve(None, (USER_DAY,), "t", "u", "lost", 1_000, 0.0, T0)
    _, a = reserve(b, (USER_DAY,), "t", "u", "r2", 100, 0.0, T0 + 60_000)
    assert not a.admitted
    b, a = reserve(b, (USER_DAY,), "t", "u", "r3", 100, 0.0, T0 + 3_700_000)
    assert a.admitted and "lost" not in b["open"], "the tenant value keeps only open reservations"


def test_the_tenant_value_stays_small_however_many_requests_it_served() -> None:
    import json

    b = None
    for i in range(4_000):
        b, _ = reserve(b, (USER_DAY,), "t", f"u{i % 50}", f"r{i}", 10, 0.0, T0 + i)
        b, _ = settle(b, (USER_DAY,), "t", f"u{i % 50}", f"r{i}", f"r{i}#0", 5, 0.0, T0 + i)
    assert len(json.dumps(b)) < 10_000 and not b["open"]


def test_a_degraded_ceiling_admits_on_the_cheaper_estimate_and_says_why() -> None:
    cheap_day = Ceiling("user", "day", max_cost_usd=0.10, on_exceed="degraded")
    b, a = reserve(None, (cheap_day,), "t", "u", "r1", 500, 0.08, T0, cheaper=(200, 0.01))
    assert a.admitted and not a.degraded
    b, a = reserve(b, (cheap_day,), "t", "u", "r2", 500, 0.08, T0, cheaper=(200, 0.01))
    assert a.admitted and a.degraded and a.reason.startswith("user daily budget of $0.10 reached")
    assert usage(b, window_key(cheap_day, "t", "u", T0))["held_cost"] == 0.09
    _, a = reserve(b, (cheap_day,), "t", "u", "r3", 500, 0.08, T0, cheaper=(200, 0.02))
    assert not a.admitted, "when even the cheaper estimate does not fit, it is refused"


def test_budget_ceilings_come_from_the_config_file(tmp_path) -> None:
    from streams.config.pipeline import DEFAULT_CONFIG, ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text(DEFAULT_CONFIG.read_text() + '\n[[budgets.ceilings]]\nscope = "tenant"\nwindow = "month"\nmax_cost_usd = 50.0\n')
    assert load_config(path).budgets == (Ceiling("tenant", "month", max_cost_usd=50.0),)
    path.write_text(DEFAULT_CONFIG.read_text() + '\n[[budgets.ceilings]]\nscope = "team"\nwindow = "month"\nmax_tokens = 5\n')
    try:
        load_config(path)
    except ConfigError as exc:
        assert "scope is tenant|user" in str(exc)
    else:
        raise AssertionError("an unknown scope is refused")


def test_a_crash_between_the_two_writes_of_any_event_leaves_counters_exact() -> None:
    """Each event writes the request's record, then the tenant value. The kill loop once lost
    the second write of a settlement: the redelivered settle saw the record settled, skipped, and
    the reservation stayed held for good. Here every event is delivered, its tenant write lost,
    and delivered again (offsets as the budget topic gives them); then once more, complete."""
    key = window_key(USER_DAY, "t", "u", T0)
    events = [
        ("reserve", 10, dict(tokens=400, cost=0.0)),
        ("charge", 11, dict(charge_id="r1#0@0", tokens=120, cost=0.0)),
        ("charge", 12, dict(charge_id="r1#0@2", tokens=60, cost=0.0)),
        ("settle", 13, dict(tokens=200, cost=0.0)),
    ]
    b: dict | None = None
    record: dict | None = None
    for kind, offset, e in events:
        for lost_tenant_write in (True, False, False):  # the third delivery is a plain duplicate
            if kind == "reserve":
                nb, nr, admission = ledger.reserve(b, record, (USER_DAY,), "t", "u", "r1", e["tokens"], e["cost"], T0, offset=offset)
                assert admission.admitted
            elif kind == "charge":
                nb, nr, _ = ledger.charge(b, record, (USER_DAY,), "t", "u", "r1", "r1#0", e["charge_id"], e["tokens"], e["cost"], T0 + offset, offset=offset)
            else:
                nb, nr, _ = ledger.settle(b, record, (USER_DAY,), "t", "u", "r1", "r1#0", e["tokens"], e["cost"], T0 + offset, offset=offset)
            record = nr
            if not lost_tenant_write:
                b = nb
        if kind == "reserve":
            assert usage(b, key)["held_tokens"] == 400 and "r1" in b["open"]
    assert usage(b, key)["tokens"] == 200, "charged 180, the settlement counted the 20 left"
    assert usage(b, key)["held_tokens"] == 0 and not b["open"], "the reservation is released"


def test_duplicate_events_at_later_offsets_change_nothing() -> None:
    """After a crash the pipeline sends some events again (a resumed task's charge, a routed
    request's reservation): the same ids at new offsets. The kill loop counted them twice when
    the tenant value's offset alone decided."""
    key = window_key(USER_DAY, "t", "u", T0)
    b, record, _ = ledger.reserve(None, None, (USER_DAY,), "t", "u", "r1", 400, 0.0, T0, offset=3)
    b, record, _ = ledger.charge(b, record, (USER_DAY,), "t", "u", "r1", "r1#0", "r1#0@0", 120, 0.0, T0, offset=4)
    b, record, applied = ledger.charge(b, record, (USER_DAY,), "t", "u", "r1", "r1#0", "r1#0@0", 120, 0.0, T0, offset=9)
    assert not applied and usage(b, key)["tokens"] == 120 and usage(b, key)["held_tokens"] == 280
    b, record, _ = ledger.settle(b, record, (USER_DAY,), "t", "u", "r1", "r1#0", 150, 0.0, T0, offset=11)
    b, record, admission = ledger.reserve(b, record, (USER_DAY,), "t", "u", "r1", 400, 0.0, T0, offset=12)
    assert admission.admitted and not b["open"], "a reservation sent again after its run settled holds nothing"
    b, record, applied = ledger.settle(b, record, (USER_DAY,), "t", "u", "r1", "r1#0", 150, 0.0, T0, offset=13)
    assert not applied and usage(b, key)["tokens"] == 150 and usage(b, key)["held_tokens"] == 0


def test_an_event_handled_late_after_later_ones_still_counts() -> None:
    """An event Faust acked without handling (a hole) is read again after later events of the
    same tenant were applied: the tenant value's offset is past it, and it must count anyway."""
    key = window_key(USER_DAY, "t", "u", T0)
    b, _, _ = ledger.reserve(None, None, (USER_DAY,), "t", "u", "r2", 100, 0.0, T0, offset=20)
    b, r1, _ = ledger.reserve(b, None, (USER_DAY,), "t", "u", "r1", 400, 0.0, T0, offset=7)
    assert usage(b, key)["held_tokens"] == 500 and b["offset"] == 20
    b, r1, applied = ledger.settle(b, r1, (USER_DAY,), "t", "u", "r1", "r1#0", 150, 0.0, T0, offset=8)
    assert applied and usage(b, key)["tokens"] == 150 and usage(b, key)["held_tokens"] == 100

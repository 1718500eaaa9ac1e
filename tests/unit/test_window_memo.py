"""The per-record path's window memo (issue 18) gives the windows the grid's own calls give.

:meth:`AssetMonitor.on_event` finds a record's window start, and the end of the oldest open window,
from a memo of the grid's cached local day (``_grid_memo``, ``_end_memo``) instead of calling
:class:`~monitor.windows.WindowGrid` twice a record. Here every record also goes to a twin asset whose
memos are cleared before each record, so it always takes the grid's calls (the path before the memo):
windows, closes, late and duplicate counts and the grid's own state must be the same after every
record, across DST days (25-h and 23-h days, a midnight that does not exist), half-hour zones,
records going back to an earlier open window or to a closed one, and windows closing mid-stream.
"""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.assets import AssetMonitor
from monitor.core.common import CoreParams, Output
from monitor.sensors import NullSensor
from monitor.windows import WindowGrid
from tests.conftest import make_event, make_pledge

UTC = dt.UTC

#: (zone, a UTC time some hours before one of its DST changes or an ordinary day)
_PLACES = [
    ("Pacific/Auckland", dt.datetime(2016, 4, 2, 10, tzinfo=UTC)),  # DST ends 04-03 03:00: a 25-h day
    ("Pacific/Auckland", dt.datetime(2016, 9, 24, 10, tzinfo=UTC)),  # DST starts 09-25 02:00: a 23-h day
    ("America/Santiago", dt.datetime(2016, 8, 13, 22, tzinfo=UTC)),  # 08-14 00:00 does not exist
    ("America/Havana", dt.datetime(2016, 3, 12, 22, tzinfo=UTC)),  # DST at 00:00 as well
    ("Australia/Lord_Howe", dt.datetime(2016, 4, 2, 8, tzinfo=UTC)),  # a 30-min DST change
    ("Asia/Kolkata", dt.datetime(2016, 5, 19, 10, tzinfo=UTC)),  # a half-hour offset
    ("UTC", dt.datetime(2016, 5, 19, 10, tzinfo=UTC)),
]
#: window lengths: three that tile a local day (15 min, 1 h, a day) and one that does not (epoch grid)
_LENGTHS = [900.0, 3600.0, 86_400.0, 1000.0]


def _pair(zone: str, start: dt.datetime, length: float) -> tuple[AssetMonitor, AssetMonitor]:
    params = CoreParams(window_s=length)
    pledge = make_pledge(asset_timezone=zone, effective_at=start - dt.timedelta(days=30))
    return AssetMonitor(pledge, params), AssetMonitor(pledge, params)


def _windows(out: list[Output]) -> list[tuple[Any, ...]]:
    return [
        (
            o.message.window_start,
            o.message.window_end,
            o.message.events_in_window,
            o.message.late_events,
            o.message.duplicates,
        )
        for o in out
    ]


def _state(a: AssetMonitor) -> tuple[Any, ...]:
    wins = sorted((s, w.length_s, w.records, w.duplicates, w.contradictions, w.polls) for s, w in a.windows.items())
    return (a.closed_until, a.max_ts, a.late_carry, a.dup_carry, a.contradiction_carry, a.grid._day, wins, a.seen)


def _feed(memo: AssetMonitor, plain: AssetMonitor, events: list[tuple[str, float]]) -> list[list[tuple[Any, ...]]]:
    """Each ``(event id, POSIX s)`` to both assets; the plain one has its memos cleared before each record."""
    sensor = NullSensor()
    closed = []
    for event_id, ts in events:
        observed = dt.datetime.fromtimestamp(ts, UTC)
        ev = make_event(event_id=event_id, observed_at=observed, received_at=observed, metrics={"trips": 1.0})
        plain._grid_memo = plain._end_memo = None
        got = memo.on_event(ev, sensor, ts=ev.observed_at.timestamp())
        want = plain.on_event(ev, sensor, ts=ev.observed_at.timestamp())
        assert _windows(got) == _windows(want), (event_id, ts)
        assert _state(memo) == _state(plain), (event_id, ts)
        closed.append(_windows(got))
    return closed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    place=st.sampled_from(_PLACES),
    length=st.sampled_from(_LENGTHS),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["on", "on", "on", "back", "jump", "again"]),
            st.floats(0.0, 1.0, allow_nan=False),
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_the_memo_gives_the_windows_of_the_grid_calls(
    place: tuple[str, dt.datetime], length: float, steps: list[tuple[str, float]]
) -> None:
    zone, start = place
    memo, plain = _pair(zone, start, length)
    t = start.timestamp()
    events: list[tuple[str, float]] = []
    for n, (step, x) in enumerate(steps):
        if step == "on":  # the common case: a little later, mostly the same window
            t += 1.0 + x * 600.0
            ts = t
        elif step == "back":  # back in time: the same window, an earlier one still open, or a closed one
            ts = t - x * 2 * length
        elif step == "jump":  # across a window, a local midnight, the DST change (within C19's bound)
            t += x * length
            ts = t
        else:  # a duplicate of an earlier record
            events.append(events[int(x * (len(events) - 1))] if events else (f"e{n}", t))
            continue
        events.append((f"e{n}", round(ts, 3)))
    _feed(memo, plain, events)
    # a checkpoint leaves the memos out: the restored asset has none, and its state pickles as before
    back = pickle.loads(pickle.dumps(memo))
    assert back._grid_memo is None and back._end_memo is None
    assert "_grid_memo" not in memo.__getstate__() and "_end_memo" not in memo.__getstate__()


def test_a_25_hour_day_is_one_daily_window_and_its_hours_keep_local_time() -> None:
    # 2016-04-03 in Auckland: NZDT (UTC+13) until 03:00, then NZST (UTC+12); local midnight is 11:00 UTC
    # of 04-02 and the next one 12:00 UTC of 04-03, 25 h later
    zone, start = "Pacific/Auckland", dt.datetime(2016, 4, 2, 11, 5, tzinfo=UTC)
    day_start = start.timestamp() - 300.0
    for length, windows_that_day in ((86_400.0, 1), (3600.0, 25), (900.0, 100)):
        memo, plain = _pair(zone, start, length)
        # every 5 min through the day and 3 h into the next (the records close the day's windows)
        events = [(f"e{i}", day_start + 60.0 + 300.0 * i) for i in range(12 * 28)]
        closed = [w for step in _feed(memo, plain, events) for w in step]
        grid = WindowGrid(length, zone)
        that_day = [w for w in closed if w[0].timestamp() < day_start + 25 * 3600.0]
        assert len(that_day) == windows_that_day
        assert that_day[-1][1].timestamp() == day_start + 25 * 3600.0  # the day's last window ends at midnight
        for w in closed:
            s = w[0].timestamp()
            assert grid.start(s) == s and grid.end(s) == w[1].timestamp()
            assert w[2] == sum(1 for _, ts in events if s <= ts < w[1].timestamp())


def test_a_record_back_in_an_earlier_open_window_lands_there_and_one_in_a_closed_window_is_late() -> None:
    zone, start = "UTC", dt.datetime(2024, 3, 4, tzinfo=UTC)
    memo, plain = _pair(zone, start, 900.0)  # lateness 600 s: [0, 900) closes once the newest passes 1500
    t0 = start.timestamp()
    _feed(memo, plain, [("a", t0 + 100.0), ("b", t0 + 950.0)])  # the memo now holds [900, 1800)
    _feed(memo, plain, [("c", t0 + 200.0)])  # back to [0, 900), still open
    assert memo.windows[t0].records == 2 and memo.windows[t0 + 900.0].records == 1
    closed = _feed(memo, plain, [("d", t0 + 1500.0), ("e", t0 + 300.0), ("f", t0 + 1000.0)])
    assert [len(c) for c in closed] == [1, 0, 0]  # d closes [0, 900) mid-stream: e is late, f lands in [900, 1800)
    assert closed[0][0][2] == 2
    assert memo.late_carry == 1 and memo.windows[t0 + 900.0].records == 3


def test_the_content_digest_is_the_blake2b_of_its_sorted_json_as_checkpoints_keep_it() -> None:
    import hashlib

    import orjson

    from monitor.core.common import _content_digest

    for args in (
        ("trip_completed", 1_463_700_000.25, "v1", {"trips": 1.0, "on_time_trips": 1.0}, {"trip_id": "t1"}),
        ("feed_poll", 0.0, None, {}, {}),
        ("vehicle_position", 1e9, "bus 7", {"lon": 174.7, "lat": -36.8}, {"b": "2", "a": "1"}),
    ):
        blob = orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
        assert _content_digest(*args) == int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")
    assert _content_digest("feed_poll", 0.0, None, {}, {}) == 1_823_224_711_083_044_397  # the value before issue 18

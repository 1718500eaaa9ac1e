"""Telemetry sources as plugins: content recognition, envelope export and read-back, one-line errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from monitor.backtest import BacktestResult, load_inputs, read_telemetry, run_backtest
from monitor.core import CoreParams
from monitor.errors import ConfigError
from monitor.sources import BUILT_IN, GROUP, recognise, sources
from monitor.sources.envelope import write_envelopes
from monitor.valuation import ValuationParams
from rules.rulebook import load_rulebook
from tests.conftest import ROOT, shared_data

SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
BOOK = ROOT / "examples" / "loan_book.jsonl"
RULES = load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml")


def outputs(res: BacktestResult) -> list[tuple[str, str, str]]:
    return [(o.topic, o.key, o.message.model_dump_json()) for o in res.outputs]


def raw_and_exported(
    book_path: Path, telemetry: Path, tmp_path: Path, params: CoreParams | None = None, inject: tuple[str, ...] = ()
) -> tuple[BacktestResult, BacktestResult]:
    book, events, incidents = load_inputs(book_path, telemetry, inject)
    out = tmp_path / "export.jsonl.gz"
    assert write_envelopes(events, out) == len(events)
    _, again, _ = load_inputs(book_path, out, inject)
    return (
        run_backtest(book, events, RULES, params, incidents),
        run_backtest(book, again, RULES, params, incidents),
    )


def test_export__auckland_sample_through_the_cli_backtests_to_the_same_alerts_and_margin_call_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "auckland.jsonl.gz"
    run = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pledgewatch"), "export", "--telemetry", str(SAMPLE), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stderr
    assert recognise(out).name == "envelope"
    inject = ("cut:akl-routes-7xx@3h:0.6", "outage:akl-routes-9xx@3h")
    book, events, incidents = load_inputs(BOOK, SAMPLE, inject)
    _, exported, _ = load_inputs(BOOK, out, inject)
    assert f"wrote {len(events):,} envelopes" in run.stdout
    a, b = run_backtest(book, events, RULES, None, incidents), run_backtest(book, exported, RULES, None, incidents)
    assert [m.margin_call_id for m in a.margin_calls] == [m.margin_call_id for m in b.margin_calls] != []
    assert [(x.alert_id, x.status, x.at) for x in a.alerts] == [(x.alert_id, x.status, x.at) for x in b.alerts]
    assert outputs(a) == outputs(b)


def test_export__madison_polls_and_their_envelopes_give_identical_outputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    polls = shared_data("madison-metro-bus-avl", "polls")
    params = CoreParams(window_s=3600.0, valuation=ValuationParams(window_s=3600.0, calibration_windows=24))
    a, b = raw_and_exported(ROOT / "examples" / "madison" / "loan_book.jsonl", polls, tmp_path, params)
    assert a.valuations and outputs(a) == outputs(b)


def test_export__wmata_vehicle_positions_and_their_envelopes_give_identical_outputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from monitor.sources.wmata import loan_book, open_day

    avl = shared_data("wmata-bus-avl", "wmata_gtfsrt_021626.csv")
    book = tmp_path / "wmata-loans.jsonl"
    book.write_bytes(b"\n".join(loan_book(open_day(avl)[0])) + b"\n")
    a, b = raw_and_exported(book, avl, tmp_path)
    assert a.valuations and outputs(a) == outputs(b)


@pytest.mark.parametrize(
    ("case", "content", "where"),
    [
        ("empty file", b"", "empty file"),
        ("binary", bytes(range(256)) * 4, "binary content"),
        ("wrong JSON shape", b'\n{"vehicle": 1, "lat": 2}\n', ':2: \'{"vehicle": 1, "lat": 2}\''),
        ("CSV with an unknown header", b"stop,arrival,count\nA,08:00,3\n", ":1: 'stop,arrival,count'"),
        ("empty folder", None, "empty folder"),
    ],
)
def test_unrecognised_telemetry__one_line_naming_the_file_the_first_bad_line_and_the_kinds_accepted(
    tmp_path, case: str, content: bytes | None, where: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "feed.dat"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        list(read_telemetry(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and where in msg, (case, msg)
    assert "expected one of:" in msg and all(name in msg for name in BUILT_IN), (case, msg)


def test_envelope__a_bad_line_names_the_file_the_line_the_field_and_what_was_expected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = '{"event_id":"e1","asset_id":"A1","observed_at":"2024-03-04T00:00:00Z","kind":"feed_poll"}'
    bad = '{"event_id":"e2","asset_id":"A1","observed_at":"yesterday","kind":"feed_poll"}'
    path = tmp_path / "envelopes.jsonl"
    path.write_text(good + "\n" + bad + "\n")
    with pytest.raises(ConfigError, match=r"envelopes\.jsonl:2: observed_at: expected an RFC 3339 time.*'yesterday'"):
        list(read_telemetry(path))
    # an envelope with a field missing is still read as an envelope, and the field is named
    path.write_text(good.replace('"asset_id":"A1",', "") + "\n")
    with pytest.raises(ConfigError, match=r"envelopes\.jsonl:1: asset_id: missing, expected it"):
        list(read_telemetry(path))


def test_sources__a_byte_order_mark_is_not_part_of_the_header(tmp_path) -> None:  # type: ignore[no-untyped-def]
    csv_path = tmp_path / "daily.csv"
    csv_path.write_bytes(
        b"\xef\xbb\xbfservice_date,day_type,bus,rail_boardings,total_rides\n01/02/2019,W,100,200,300\n"
    )
    assert recognise(csv_path).name == "cta-daily"
    assert [e.metrics for e in read_telemetry(csv_path, {"cta-bus"})] == [{"boardings": 100.0}]


def test_export__the_same_feed_gives_the_same_bytes_whatever_the_file_is_called(tmp_path) -> None:  # type: ignore[no-untyped-def]
    events = list(read_telemetry(SAMPLE, {"akl-routes-7xx"}))[:500]
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "other-name.jsonl.gz"
    write_envelopes(events, a)
    write_envelopes(events, b)
    assert a.read_bytes() == b.read_bytes()


def test_sources__the_built_ins_are_entry_points_like_any_plugin() -> None:
    from importlib.metadata import entry_points

    registered = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    assert registered == BUILT_IN  # pyproject.toml and monitor.sources.BUILT_IN say the same
    assert sorted(s.name for s in sources()) == sorted(BUILT_IN)


def test_an_asset_the_feed_does_not_carry_gets_no_heartbeat_and_reads_as_silent_since_monitoring_began(
    tmp_path, caplog
) -> None:  # type: ignore[no-untyped-def]
    """A pledge naming an asset no Auckland route maps to (a typo, or another feed's asset): the Auckland
    reader sends it no heartbeat (which would read as "reachable, zero activity" and impair it at once),
    the backtest says which pledged assets have no record, and its feed-silent alert counts the silence
    from its first window, not one window."""
    import logging

    import orjson

    from monitor.backtest import load_inputs
    from rules.rulebook import load_rulebook

    out = []
    for line in (ROOT / "examples" / "loan_book.jsonl").read_bytes().splitlines():
        out.append(line)
        d = orjson.loads(line)
        if d["type"] == "collateral_pledged" and d["asset_id"] == "akl-routes-0xx":
            d.update(asset_id="akl-ghost", event_id=d["event_id"] + ":ghost")
            d["pledge_registration_no"] += "-G"
            out.append(orjson.dumps(d))
    book_path = tmp_path / "ghost.jsonl"
    book_path.write_bytes(b"\n".join(out) + b"\n")
    with caplog.at_level(logging.WARNING, logger="monitor.backtest"):
        book, events, _ = load_inputs(book_path, ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz")
    assert "no record of the pledged assets ['akl-ghost']" in caplog.text
    assert not [e for e in events if e.asset_id == "akl-ghost"]
    res = run_backtest(book, events, load_rulebook(ROOT / "rules" / "rulebooks" / "default.yaml"))
    silent = [a for a in res.alerts if a.rule_id == "feed-silent" and a.asset_id == "akl-ghost"]
    assert silent, [a.rule_id for a in res.alerts]
    first = next(v for v in res.valuations if v.asset_id == "akl-ghost")
    fired = next(v for v in res.valuations if v.asset_id == "akl-ghost" and v.window_end == silent[0].at)
    # silent since its first window began, not for the one window just closed
    assert fired.last_event_age_seconds == (fired.window_end - first.window_start).total_seconds() >= 1800
    assert "no record for" in silent[0].summary_en and "last event" not in silent[0].summary_en

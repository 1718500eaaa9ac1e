"""What a person reads: plain text in files and pipes, colour only on a terminal; values with their lower bound.

A new user's trial of the README found escape codes in logs redirected to a file (the worker's log
coloured by whether *stdout* was a terminal while it wrote to stderr), and a dark feed's value shown
flat (¥9,200,000 window after window) while its interval widened.
"""

from __future__ import annotations

import io
import logging
import logging.config

from monitor.display import AlertPrinter, coverage_part, format_value, make_console
from monitor.schemas import MarginCall
from streams.app import worker_logging_config
from tests.conftest import T0

ESC = "\x1b["


class Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_console_not_on_a_terminal_prints_no_escape_code_even_when_colour_is_forced(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    c = make_console(min_width=160)
    assert not c.is_terminal and c.width == 160
    c.print("[bold red]critical[/] [dim]coverage[/]")
    assert out.getvalue() == "critical coverage\n"


def test_a_terminal_gets_colour_unless_no_color_is_set(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = Tty()
    monkeypatch.setattr("sys.stdout", tty)
    make_console(stream=tty, force_terminal=True).print("[red]x[/]")
    assert ESC in tty.getvalue()
    tty = Tty()
    monkeypatch.setattr("sys.stdout", tty)
    make_console(stream=tty, environ={"NO_COLOR": "1"}, force_terminal=True).print("[red]x[/]")
    assert ESC not in tty.getvalue() and "x" in tty.getvalue()


def test_the_alert_timeline_redirected_to_a_file_is_plain_text(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    mc = MarginCall(
        margin_call_id="mc-1",
        loan_id="L1",
        status="issued",
        issued_at=T0,
        updated_at=T0,
        coverage_ratio=1.1,
        collateral_value=7_700_000.0,
        outstanding=7_000_000.0,
        warning_line=1.3,
        required_top_up_collateral=2_100_000.0,
        required_repayment=1_615_385.0,
        cure_deadline=T0,
        alert_id="al-1",
        rulebook="default",
        rulebook_version=1,
    )
    AlertPrinter(timezone="UTC").margin_call(mc)
    text = out.getvalue()
    assert "MARGIN CALL mc-1" in text and ESC not in text


def test_the_workers_log_is_plain_in_a_file_even_from_a_terminal_and_coloured_on_one() -> None:
    for stream, env, coloured in (
        (io.StringIO(), {}, False),  # `pledgewatch worker 2> worker.log` (stdout a terminal or not)
        (Tty(), {}, True),
        (Tty(), {"NO_COLOR": "1"}, False),
    ):
        cfg = worker_logging_config("warning", stream, env)
        logging.config.dictConfig(cfg)
        try:
            logging.getLogger("streams.app").warning("feed %s", "stale")
            logging.getLogger("pledgewatch.lifecycle").info("worker started")  # routine, INFO, still shown
            logging.getLogger("streams.worker").info("clock: tick")  # a line per tick: --loglevel info only
            logging.getLogger("aiokafka").info("chatter")  # third parties at the worker's level
        finally:
            logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
            logging.getLogger().handlers.clear()
        text = stream.getvalue()
        assert "streams.app: feed stale" in text and "worker started" in text
        assert "chatter" not in text and "tick" not in text
        assert (ESC in text) is coloured, (env, text)


def test_the_value_is_shown_with_its_lower_bound_so_a_dark_feeds_widening_interval_is_seen() -> None:
    # a feed dark within its grace: the value is carried flat, the lower bound falls window by window
    lines = [coverage_part("L-AKL-003", 1.314, "active", 9_200_000.0, low) for low in (8_400_000.0, 7_900_000.0)]
    assert lines == [
        "L-AKL-003 131.4% active ¥9,200,000 (90% lower bound ¥8,400,000)",
        "L-AKL-003 131.4% active ¥9,200,000 (90% lower bound ¥7,900,000)",
    ]
    assert coverage_part("L1", None, "calibrating", 0.0, 0.0) == "L1 awaiting valuation"
    assert format_value(9_200_000.0, 7_900_000.0, "zh") == "¥9,200,000（90% 下限 ¥7,900,000）"

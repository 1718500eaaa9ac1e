"""The ``pledgewatch`` command line (typer; commands that need Kafka import ``streams`` lazily).

Typer was chosen over click directly for typed options with generated help, and
rich for tables and progress bars: both well kept, both outside what this
project exists for.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from monitor.display import make_console
from monitor.errors import ConfigError, FileProblems, PledgewatchError, ProfileError, RulebookError
from monitor.settings import ROOT, Settings

if TYPE_CHECKING:
    import datetime as dt

    from monitor.stress import ConcentrationChange

app = typer.Typer(
    help="pledgewatch: post-loan risk monitor for loans secured by pledged data assets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Rulebooks: validate and publish.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics of pledgewatch.", no_args_is_help=True)
profiles_app = typer.Typer(
    help="Asset profiles: what a kind of pledged data reports; validate files.", no_args_is_help=True
)
app.add_typer(rules_app, name="rules")
app.add_typer(topics_app, name="topics")
app.add_typer(profiles_app, name="profiles")
auth_app = typer.Typer(help="Credentials of the query API (docs/runbook.md, 'HTTP security').", no_args_is_help=True)
app.add_typer(auth_app, name="auth")

err = make_console(stderr=True, soft_wrap=True)  # one problem per line, even when piped; plain when not a terminal
SAMPLE = ROOT / "examples" / "data" / "auckland-tripupdates-20160520.jsonl.gz"
LOAN_BOOK = ROOT / "examples" / "loan_book.jsonl"
SCHEMAS = ROOT / "deploy" / "schemas"

RulesOpt = Annotated[Path | None, typer.Option("--rules", help="Rulebook YAML (default: settings.rulebook).")]
TelemetryOpt = Annotated[
    Path,
    typer.Option(
        help="Telemetry file or folder, recognised by content: TelemetryEvent envelopes (.jsonl[.gz]), Auckland "
        "polls, BusTime polls, GTFS-rt VehiclePositions CSV with its static GTFS, CTA daily boardings, or any "
        "installed source plugin: docs/sources.md."
    ),
]
InjectOpt = Annotated[list[str] | None, typer.Option("--inject", help="Incident, e.g. outage:akl-routes-7xx@3h.")]


def _console(stderr: bool = False) -> Console:
    """The console command output goes to, never cutting a number.

    A terminal keeps its own width; a pipe or a file (where rich assumes 80 columns and cuts cells to
    "¥1,872,6…") gets a width no table reaches: 200 columns hold every table pledgewatch prints
    (the widest, the alert timeline, is about 180).
    """
    # plain text (no escape codes) when not a terminal, NO_COLOR respected (monitor.display.make_console)
    return make_console(stderr=stderr, file_width=200)


def _fail(exc: Exception) -> None:
    # escaped: a message may hold brackets ("expected [low, high]") that rich would read as markup
    if isinstance(exc, FileProblems):
        for p in exc.problems:
            err.print(f"[red]{escape(p)}")
    else:
        err.print(f"[red]error:[/] {escape(str(exc))}")
    raise typer.Exit(1)


def _lang(lang: str) -> str:
    if lang not in ("zh", "en"):
        raise ConfigError(f"--lang: got {lang!r}, expected one of ['en', 'zh']")
    return lang


def _zone(tz: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz: got {tz!r}, expected an IANA time zone such as Asia/Shanghai") from None
    return tz


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for e in exc.errors():
            if not e["loc"]:  # a rule across fields: its message names them (and never echoes a secret)
                err.print(f"[red]bad configuration:[/] {e['msg'].removeprefix('Value error, ')}")
                continue
            field = str(e["loc"][0])
            var = (
                "KAFKA_BOOTSTRAP_SERVERS"
                if field in ("bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS")
                else ("PLEDGEWATCH_" + field.upper())
            )
            err.print(f"[red]bad configuration:[/] {var}: got {e.get('input')!r}, expected {e['msg']}")
        raise typer.Exit(2) from None


def _params(settings: Settings):  # type: ignore[no-untyped-def]
    """The core's parameters from the settings; also puts the bank's holiday calendar in use when set."""
    from monitor.core import CoreParams
    from monitor.holidays import load_calendar_file, use_calendar
    from monitor.valuation import ValuationParams

    if settings.holiday_calendar is not None:  # cure deadlines of every command that runs the core
        use_calendar(load_calendar_file(settings.holiday_calendar))

    return CoreParams(
        window_s=settings.window_s,
        allowed_lateness_s=settings.allowed_lateness_s,
        max_clock_skew_s=settings.max_clock_skew_s,
        dedup_horizon_s=settings.effective_dedup_horizon_s,
        earliest_event_time_s=settings.earliest_event_time.timestamp(),
        hold_unknown=settings.hold_unknown,
        valuation=ValuationParams(
            window_s=settings.window_s,
            calibration_windows=settings.calibration_windows,
            shift_warning_every_s=settings.shift_warning_every_s,
            shift_confirm_every_s=settings.shift_confirm_every_s,
        ),
    )


def _rulebook_or_exit(file: Path):  # type: ignore[no-untyped-def]
    """Load and validate a rulebook, or print its problems and exit 1."""
    from rules.rulebook import load_rulebook

    try:
        return load_rulebook(file)
    except RulebookError as exc:
        _fail(exc)


@rules_app.command("check")
def rules_check(file: Path) -> None:
    """Validate a rulebook; prints file:line: reason for each problem. Exit 0 when valid, 1 otherwise."""
    rb = _rulebook_or_exit(file)
    _console().print(f"{file}: rulebook {rb.name!r} version {rb.version}: {len(rb.rules)} rules OK", soft_wrap=True)


@profiles_app.command("check")
def profiles_check(files: list[Path]) -> None:
    """Validate asset-profile files; prints file:line: reason for each problem. Exit 0 when all are valid, else 1."""
    from monitor.profiles import load_profile

    bad = False
    for f in files:
        try:
            p = load_profile(f)
        except ProfileError as exc:
            bad = True
            for problem in exc.problems:
                err.print(f"[red]{escape(problem)}")
            continue
        kinds, (kind, metric) = len(p.kinds), p.activity
        _console().print(f"{f}: profile {p.name!r}: {kinds} record kinds, activity {kind}.{metric} OK", soft_wrap=True)
    if bad:
        raise typer.Exit(1)


@profiles_app.command("list")
def profiles_list() -> None:
    """The built-in profiles and their files."""
    from monitor.profiles import PROFILE_DIR, PROFILES

    for name, p in sorted(PROFILES.items()):
        _console().print(
            f"{name}: {PROFILE_DIR / (name + '.yaml')} (activity {p.activity[0]}.{p.activity[1]})", soft_wrap=True
        )


@rules_app.command("publish")
def rules_publish(file: Path) -> None:
    """Validate a rulebook, then publish it to the rules-control topic; every worker switches to it."""
    from streams.rules_control import publish_rulebook
    from streams.topics import create_topics

    rb = _rulebook_or_exit(file)
    s = _settings()
    create_topics(s)
    offset = publish_rulebook(s, rb)
    _console().print(
        f"published rulebook {rb.name!r} version {rb.version} to {s.topic('rules-control')} "
        f"(offset {offset}); workers report on {s.topic('rules-status')}",
        soft_wrap=True,
    )


@app.command()
def backtest(
    telemetry: TelemetryOpt = SAMPLE,
    loan_book: Annotated[Path, typer.Option(help="Loan events, one JSON object a line.")] = LOAN_BOOK,
    rules: RulesOpt = None,
    inject: InjectOpt = None,
    lang: Annotated[str, typer.Option(help="Summary language: zh or en.")] = "en",
    tz: Annotated[str | None, typer.Option(help="Display time zone (default settings.display_timezone).")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write every output as JSON lines here.")] = None,
    compare: Annotated[
        Path | None, typer.Option("--compare", help="A second rulebook: print which alerts it adds, removes, moves.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --compare: print the diff as JSON.")] = False,
) -> None:
    """Run the loan book and telemetry through the core in-process (no broker); print the alert timeline."""
    from monitor.backtest import interval_coverage, load_inputs, run_backtests
    from monitor.display import AlertPrinter
    from rules.rulebook import load_rulebook

    settings = _settings()
    try:
        _lang(lang)
        zone = _zone(tz or settings.display_timezone)
        rb = load_rulebook(rules or settings.rulebook)
        rulebooks = [rb] if compare is None else [rb, load_rulebook(compare)]
        book, events, incidents = load_inputs(loan_book, telemetry, inject or [])
        results = run_backtests(book, events, rulebooks, _params(settings), incidents)
    except (PledgewatchError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    if compare is not None:
        _print_diff(results[0], results[1], rulebooks, as_json, zone)
        return
    res = results[0]
    printer = AlertPrinter(timezone=zone, lang=lang)
    # a timeline in event time: the core emits a loan's records when its evaluation runs, so a record of
    # an earlier window (an asset's feed-silent closed by the clock) may come after a later one's margin call
    shown = ("alerts", "margin-calls", "watch-list", "classification")
    for o in sorted((o for o in res.outputs if o.topic in shown), key=_timeline_time):
        if o.topic == "alerts":
            printer.alert(o.message)  # type: ignore[arg-type]
        elif o.topic == "margin-calls":
            printer.margin_call(o.message)  # type: ignore[arg-type]
        elif o.topic == "watch-list":
            printer.watch_list(o.message)  # type: ignore[arg-type]
        elif o.topic == "classification":
            printer.classification(o.message)  # type: ignore[arg-type]
    if output is not None:
        with output.open("w", encoding="utf-8") as fh:
            for o in res.outputs:
                record = {"topic": o.topic, "key": o.key, "value": o.message.model_dump(mode="json")}
                fh.write(orjson.dumps(record).decode() + "\n")
    ok = sum(v for (t, k), v in res.sensor.events.items() if k == "ok" and t == "pledge.telemetry")
    issued = sum(1 for m in res.margin_calls if m.status == "issued")
    dead = dict(res.sensor.dead_letters) or 0
    summary = (
        f"{res.events:,} 条遥测记录（有效 {ok:,} 条），用时 {res.seconds:.1f} 秒；估值 {len(res.valuations):,} 次，"
        f"告警状态变化 {len(res.alerts)} 次，发出追加保证金通知 {issued} 份；死信：{dead}"
        if lang == "zh"
        else f"{res.events:,} telemetry records ({ok:,} ok) in {res.seconds:.1f} s; "
        f"{len(res.valuations):,} valuations, {len(res.alerts)} alert transitions, "
        f"margin calls issued: {issued}; dead letters: {dead}"
    )
    _console().print(f"[bold]{summary}", soft_wrap=True)
    cover, n_cover = interval_coverage(res.valuations)
    if cover is not None:
        _console().print(
            f"预测区间覆盖率（单步 90 %）：{cover:.1%}，共 {n_cover:,} 个应运营窗口"
            if lang == "zh"
            else f"interval coverage (one-step 90 % band): {cover:.1%} of {n_cover:,} windows in expected service",
            soft_wrap=True,
        )
    if any(e.kind == "timepoint_departure" for e in events):
        _print_service(events, lang)


def _timeline_time(o: Any) -> dt.datetime:
    """The event time a timeline row shows: a margin call's last change, the others' ``at`` (sort key)."""
    m = o.message
    at: dt.datetime = m.updated_at if o.topic == "margin-calls" else m.at
    return at


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Envelope JSON lines to write; gzip when it ends in .gz.")],
    telemetry: TelemetryOpt = SAMPLE,
    loan_book: Annotated[
        Path,
        typer.Option(help="The assets to export are those it pledges (a source needs them: heartbeats, route sets)."),
    ] = LOAN_BOOK,
) -> None:
    """Write any supported telemetry source as TelemetryEvent envelopes (JSON lines), for backtest or replay.

    The same assets as ``backtest`` with the same loan book: a backtest of the export gives the same
    alerts and margin calls as one of the source.
    """
    from monitor.backtest import load_inputs
    from monitor.sources.envelope import write_envelopes

    try:
        # the same checks as backtest: a valid loan book, and records of at least one pledged asset
        _, events, _ = load_inputs(loan_book, telemetry)
        n = write_envelopes(events, out)
    except (PledgewatchError, FileNotFoundError, ValueError, OSError) as exc:
        _fail(exc)
        return
    _console().print(f"wrote {n:,} envelopes to {out}", soft_wrap=True)


def _print_service(events: list, lang: str) -> None:  # type: ignore[type-arg]
    """Per-route service of a vehicle-positions backtest: OTP at timepoints, completed and missed trips."""
    from rich.table import Table

    from monitor.sources.vehicle_positions import EARLY_S, LATE_S, service_by_route

    zh = lang == "zh"
    heads = (
        ("线路", "时刻点发车", "准点", "准点率", "计划班次", "完成班次", "缺失班次")
        if zh
        else ("route", "timepoint departures", "on time", "OTP", "trips scheduled", "trips completed", "missed trips")
    )
    title = "准点率（早2分钟至晚7分钟）" if zh else "On-time performance (2 min early to 7 min late)"
    table = Table(*heads, title=title)
    for route, r in service_by_route(events).items():
        otp = f"{r.otp:.1%}" if r.otp is not None else "–"
        # a multi-day archive can miss many: the first few by id, the rest counted
        shown = " ".join(r.missed[:5]) + (f" +{len(r.missed) - 5}" if len(r.missed) > 5 else "")
        missed = f"{len(r.missed)}" + (f": {shown}" if r.missed else "")
        table.add_row(route, f"{r.departures:,}", f"{r.on_time:,}", otp, f"{r.scheduled:,}", f"{r.completed:,}", missed)
    _console().print(table)
    early, late = f"{EARLY_S:.0f}", f"{LATE_S:.0f}"
    note = f"准点：早 {early} 秒至晚 {late} 秒" if zh else f"on time: {early} s early to {late} s late"
    _console().print(note, style="dim")


def _print_diff(a, b, rulebooks, as_json: bool, tz: str) -> None:  # type: ignore[no-untyped-def]
    import zoneinfo

    from rich.table import Table

    from monitor.diff import diff_alerts

    d = diff_alerts(a.alerts, b.alerts, a.margin_calls, b.margin_calls)
    if as_json:
        print(orjson.dumps(d.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    from monitor.display import format_time

    zone = zoneinfo.ZoneInfo(tz)
    name = [f"{rb.name} v{rb.version}" for rb in rulebooks]
    table = Table(title=f"alerts of A ({name[0]}) vs B ({name[1]})", expand=False)
    for col in ("change", "time", "loan", "rule", "subject", "coverage"):
        table.add_column(col)

    def row(change: str, al, note: str = "") -> None:  # type: ignore[no-untyped-def]
        cov = al.facts.get("coverage_ratio")
        table.add_row(
            change + note,
            format_time(al.at, zone),
            al.loan_id,
            al.rule_id,
            al.subject,
            f"{cov:.1%}" if isinstance(cov, float) else "n/a",
        )

    for al in d.only_b:
        row("only in B (added)", al)
    for al in d.only_a:
        row("only in A (removed)", al)
    for _a, y, s in d.shifted:
        row("B earlier" if s < 0 else "B later", y, f" by {abs(s) / 60:.0f} min")
    make_console(min_width=140, file_width=200).print(table)
    mc = d.to_json()["margin_calls"]
    _console().print(
        f"same: {len(d.same)}, added: {len(d.only_b)}, removed: {len(d.only_a)}, moved: {len(d.shifted)}; "
        f"margin calls issued A {mc['a']} → B {mc['b']}",  # type: ignore[index]
        soft_wrap=True,
    )


@auth_app.command("hash-token")
def auth_hash_token() -> None:
    """Read an API token on standard input; print the SHA-256 line the tokens file stores instead of it.

    Read from standard input, never an argument: arguments are visible to every user in ps and in
    shell history. A trailing newline is not part of the token.
    """
    import sys

    from streams.security import hash_token

    token = sys.stdin.read().rstrip("\r\n")
    if not token:
        err.print("auth hash-token: got an empty token on standard input, expected the token (e.g. `echo -n ... |`)")
        raise typer.Exit(1)
    if len(token) < 32:
        err.print(
            f"auth hash-token: got a token of {len(token)} characters, expected at least 32 random characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`): a short one can be guessed"
        )
        raise typer.Exit(1)
    typer.echo(hash_token(token))


@topics_app.command("create")
def topics_create() -> None:
    """Create every pledgewatch topic that does not exist (compacted where DESIGN says)."""
    from streams.topics import create_topics

    s = _settings()
    created = create_topics(s)
    _console().print(f"created {len(created)} topics on {s.bootstrap_servers}: {', '.join(created) or 'none needed'}")


@topics_app.command("rewind")
def topics_rewind(
    topic: Annotated[str, typer.Option(help="Logical input topic: telemetry, loan-book...")] = "telemetry",
    to_datetime: Annotated[
        str | None, typer.Option(help="Replay from the first record at or after this ISO 8601 time (with offset).")
    ] = None,
    to_offset: Annotated[int | None, typer.Option(help="Replay from this offset (0 = earliest kept).")] = None,
    partition: Annotated[list[int] | None, typer.Option(help="Only these partitions (repeat); default all.")] = None,
) -> None:
    """Move the stopped workers' committed offsets back (or forward) to replay input (docs/runbook.md)."""
    import datetime as dt

    from streams.topics import rewind_group

    s = _settings()
    when = None
    if to_datetime is not None:
        try:
            when = dt.datetime.fromisoformat(to_datetime)
        except ValueError:
            pass
        if when is None or when.tzinfo is None:
            example = "2026-11-29T19:40:00+08:00"
            _fail(ConfigError(f"--to-datetime: got {to_datetime!r}, expected ISO 8601 with an offset, e.g. {example}"))
    try:
        moved = rewind_group(s, topic, when, to_offset, partition)
    except ConfigError as exc:
        _fail(exc)
    for p, (old, new) in moved.items():
        _console().print(f"{s.topic(topic)}[{p}]: committed {old} -> {new}")


@topics_app.command("delete")
def topics_delete(prefix: Annotated[str, typer.Option(help="Delete topics starting with this.")]) -> None:
    """Delete the topics whose names start with PREFIX (e.g. a finished demo's)."""
    from streams.topics import delete_topics

    s = _settings()
    _console().print(f"deleted: {', '.join(delete_topics(s, prefix)) or 'none'}")


@app.command()
def replay(
    telemetry: TelemetryOpt = SAMPLE,
    loan_book: Annotated[Path, typer.Option(help="Loan events to produce first.")] = LOAN_BOOK,
    rate: Annotated[float, typer.Option(help="Observations per second (0 = as fast as possible).")] = 1000.0,
    inject: InjectOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    batch: Annotated[
        int,
        typer.Option(
            min=1,
            max=10_000,
            help="Most observations of one asset's poll sent as one record (1 = one record each).",
        ),
    ] = 500,
) -> None:
    """Produce the loan book, then recorded telemetry, onto the topics (with rate control)."""
    from monitor.backtest import load_inputs
    from monitor.incidents import apply_incidents
    from streams.replay import make_producer, produce_loan_book, produce_telemetry
    from streams.topics import create_topics

    s = _settings()
    try:
        book, events, incidents = load_inputs(loan_book, telemetry, inject or [])
        events = list(apply_incidents(events, incidents))
    except (PledgewatchError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    create_topics(s)
    producer = make_producer(s)
    try:
        n_loans = produce_loan_book(producer, s, book)
        n = produce_telemetry(
            producer, s, events, rate=rate, total=len(events), progress=progress, max_observations=batch
        )
    finally:
        producer.close()
    _console().print(f"produced {n_loans} loan events and {n:,} telemetry observations to {s.topic_prefix}*")


@app.command()
def simulate(
    assets: Annotated[int, typer.Option(min=1, help="Pledged assets (sim-0000 ...), each on a loan of its own.")] = 20,
    vehicles: Annotated[int, typer.Option(min=1, help="Buses per asset.")] = 50,
    events: Annotated[int, typer.Option(min=1, help="Telemetry records to produce.")] = 100_000,
    rate: Annotated[
        float, typer.Option(min=0.0, help="Records per second (0 = as fast as the broker takes them).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same records).")] = 1,
    inject: Annotated[
        list[str] | None,
        typer.Option(
            "--inject",
            help=(
                "Incident of a simulated asset or group: outage:sim-0003@2h (feed dark) "
                "or cut:G-007@2h:0.8 (80 % of its trips stop)."
            ),
        ),
    ] = None,
    loans: Annotated[bool, typer.Option(help="Produce the simulated loan book first.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    groups: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Borrower groups G-000 ... of the loans (loan i in group i mod N), assets in 5 regions; "
            "--inject outage:G-007@2h darkens a whole group. Default: each borrower a group of its own.",
        ),
    ] = None,
) -> None:
    """Produce simulated bus-dispatch telemetry (N assets × M vehicles, seeded from the Auckland sample)."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from monitor.incidents import parse_incident
    from monitor.simulate import Fleet
    from streams.replay import make_producer, produce_loan_book
    from streams.simulate import produce_records
    from streams.topics import create_topics

    s = _settings()
    try:
        fleet = Fleet(assets, vehicles, seed=seed, incidents=[parse_incident(i) for i in inject or []], groups=groups)
    except PledgewatchError as exc:
        _fail(exc)
        return
    create_topics(s)
    n_loan_events = 0
    if loans:
        producer = make_producer(s)
        try:
            n_loan_events = produce_loan_book(producer, s, fleet.loan_book())
        finally:
            producer.close()
    with Progress(
        TextColumn("simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        disable=not progress,
    ) as bar:
        task = bar.add_task("simulate", total=events, rate="")

        def tick(n: int, seconds: float) -> None:
            bar.update(task, completed=n, rate=f"{n / max(seconds, 1e-9):,.0f} records/s")

        stats = asyncio.run(produce_records(s, fleet.records(events), rate=rate, on_progress=tick))
        bar.update(task, completed=stats.records)
    _console().print(
        f"produced {stats.records:,} telemetry records of {assets} assets × {vehicles} vehicles "
        f"in {stats.seconds:.1f} s ({stats.rate:,.0f} records/s) to {s.topic('telemetry')}"
        + (f", after {n_loan_events} loan events to {s.topic('loan-book')}" if loans else " (--no-loans)")
    )


@app.command()
def watch(
    lang: Annotated[str, typer.Option(help="Summary language: zh or en.")] = "en",
    tz: Annotated[str | None, typer.Option(help="Display time zone.")] = None,
) -> None:
    """Print alerts, margin calls and loan coverage live from the output topics (Ctrl-C stops)."""
    from streams.watch import watch as run_watch

    try:
        run_watch(_settings(), lang=lang, timezone=tz)
    except KeyboardInterrupt:
        pass


@app.command()
def worker(
    rules: RulesOpt = None,
    loglevel: Annotated[str, typer.Option(help="faust log level.")] = "warning",
) -> None:
    """Run the faust worker: consumes telemetry and loan events, publishes valuations, alerts, margin calls."""
    from rules.rulebook import load_rulebook
    from streams.app import run_worker

    s = _settings()
    try:
        rb = load_rulebook(rules or s.rulebook)
        run_worker(s, rb, _params(s), loglevel)
    except (RulebookError, ConfigError) as exc:
        _fail(exc)


@app.command()
def report(
    loan: Annotated[str | None, typer.Option(help="Loan id (default: every loan).")] = None,
    source: Annotated[str, typer.Option(help="'backtest' (recorded data) or 'topics' (a running deployment).")] = (
        "backtest"
    ),
    telemetry: TelemetryOpt = SAMPLE,
    loan_book: Annotated[Path, typer.Option(help="With --source backtest: loan events.")] = LOAN_BOOK,
    rules: RulesOpt = None,
    inject: InjectOpt = None,
    start: Annotated[str | None, typer.Option("--from", help="Period start, ISO 8601 with offset.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Period end (exclusive), ISO 8601 with offset.")] = None,
    lang: Annotated[str, typer.Option(help="Labels: zh or en.")] = "en",
    tz: Annotated[str | None, typer.Option(help="Display time zone (default settings.display_timezone).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.html and the PNGs.")] = Path("report"),
    png: Annotated[bool, typer.Option(help="Also write a PNG per chart (needs Chrome or Chromium).")] = True,
) -> None:
    """Post-loan review (贷后检查): value with interval and appraisal, coverage and lines, quality, anomaly, alerts."""
    import datetime as dt

    from monitor.report import build_report, histories

    settings = _settings()

    def when(text: str | None, opt: str) -> dt.datetime | None:
        if text is None:
            return None
        try:
            t = dt.datetime.fromisoformat(text)
        except ValueError:
            t = None
        if t is None or t.tzinfo is None:
            msg = f"{opt}: got {text!r}, expected an ISO 8601 time with offset, e.g. 2016-05-20T00:00+12:00"
            _fail(ConfigError(msg))
        return t

    try:
        t0, t1 = when(start, "--from"), when(end, "--to")
        if source == "backtest":
            from monitor.backtest import load_inputs, run_backtest
            from rules.rulebook import load_rulebook

            book, events, incidents = load_inputs(loan_book, telemetry, inject or [])
            res = run_backtest(book, events, load_rulebook(rules or settings.rulebook), _params(settings), incidents)
            vals, snaps, alerts, calls = res.valuations, res.snapshots, res.alerts, res.margin_calls
        elif source == "topics":
            from streams.latest import read_outputs

            vals, snaps, alerts, calls = read_outputs(settings, timeout_s=120.0)  # 30 s a topic, as before
        else:
            raise ConfigError(f"--source: got {source!r}, expected backtest or topics")
        loans = histories(vals, snaps, alerts, calls, loan, t0, t1)
        paths = build_report(loans, out, _lang(lang), _zone(tz or settings.display_timezone), png)
    except (PledgewatchError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    _console().print(f"wrote {paths[0]}" + (f" and {len(paths) - 1} PNGs" if len(paths) > 1 else ""))


@app.command()
def stress(
    activity_drop: Annotated[float, typer.Option(help="Activity drop, ratio 0..1 (0.3 = -30 %).")] = 0.0,
    quality_drop: Annotated[float, typer.Option(help="Quality drop, ratio 0..1.")] = 0.0,
    asset: Annotated[list[str] | None, typer.Option("--asset", help="Shock only these assets (repeat).")] = None,
    source: Annotated[str, typer.Option(help="'backtest' (recorded data) or 'topics' (a running deployment).")] = (
        "backtest"
    ),
    telemetry: TelemetryOpt = SAMPLE,
    loan_book: Annotated[Path, typer.Option(help="With --source backtest: loan events.")] = LOAN_BOOK,
    inject: InjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What-if on the current portfolio: which loans cross which line under an activity / quality drop."""
    from dataclasses import asdict

    from monitor.schemas import CollateralValuation, LoanExposure, LoanRiskSnapshot
    from monitor.stress import Shock, concentration
    from monitor.stress import stress as run_stress
    from rules.rulebook import load_rulebook

    settings = _settings()
    try:
        shock = Shock(activity_drop, quality_drop, frozenset(asset or ()))
        rulebook = load_rulebook(settings.rulebook)
        if source == "backtest":
            from monitor.backtest import load_inputs, run_backtests

            book, events, incidents = load_inputs(loan_book, telemetry, inject or [])
            res = run_backtests(
                book,
                events,
                [rulebook],
                _params(settings),
                incidents,
            )[0]
            loans = {s.loan_id: s for s in res.of("loan-risk")}
            vals = {v.asset_id: v for v in res.valuations}
            exposures = {e.loan_id: e for e in res.of("portfolio-exposure")}
        elif source == "topics":
            from streams.latest import latest_by_key

            loans = latest_by_key(settings, "loan-risk", LoanRiskSnapshot)
            vals = latest_by_key(settings, "valuations", CollateralValuation)
            exposures = latest_by_key(settings, "portfolio-exposure", LoanExposure)
        else:
            raise ConfigError(f"source: got {source!r}, expected 'backtest' or 'topics'")
    except (PledgewatchError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    pledged = {a.asset_id for snap in loans.values() for a in snap.assets}
    unknown = sorted(shock.assets - pledged)
    if unknown:  # a typo would read as a portfolio that survives the shock
        _fail(ConfigError(f"asset: got {', '.join(unknown)}, expected a pledged asset: {', '.join(sorted(pledged))}"))
        return
    results = run_stress(loans.values(), vals, shock)
    if as_json:
        print(orjson.dumps([{**asdict(r), "crosses": r.crosses} for r in results], option=orjson.OPT_INDENT_2).decode())
        return
    from rich.table import Table

    from monitor.display import format_yuan

    scope = ", ".join(sorted(shock.assets)) or "all assets"
    table = Table(title=f"stress: activity -{activity_drop:.0%}, quality -{quality_drop:.0%} on {scope}")
    for col in ("loan", "coverage now", "after", "line now", "line after", "top-up (collateral)", "or repayment"):
        table.add_column(col, justify="right" if col not in ("loan", "line now", "line after") else "left")

    def pct(c: float | None) -> str:
        return f"{c:.1%}" if c is not None else "n/a"

    for r in results:
        mark = "[bold red]" if r.crosses else ""
        table.add_row(
            r.loan_id,
            pct(r.coverage_before),
            f"{mark}{pct(r.coverage_after)}",
            r.line_before,
            f"{mark}{r.line_after}",
            format_yuan(r.required_top_up_collateral, up=True),
            format_yuan(r.required_repayment, up=True),
        )
    _console().print(table)
    crossing = [r.loan_id for r in results if r.crosses]
    _console().print(f"{len(crossing)} of {len(results)} loans cross a line: {', '.join(crossing) or 'none'}")
    _print_concentration(concentration(exposures.values(), vals, shock, rulebook))


def _print_concentration(changes: list[ConcentrationChange], per_dimension: int = 5) -> None:
    """The concentration table of ``stress``: per dimension its largest shares after the shock and every breach."""
    from rich.table import Table

    table = Table(title="concentration: uncovered exposure as a share of the portfolio, before and after the shock")
    for col in ("dimension", "key", "share now", "after", "limit", "breach now", "breach after"):
        table.add_column(col, justify="right" if col in ("share now", "after", "limit") else "left")
    shown: dict[str, int] = {}
    for c in changes:
        a, b = c.after, c.before
        n = shown.get(a.dimension, 0)
        if n >= per_dimension and not a.breached and not (b is not None and b.breached):
            continue
        shown[a.dimension] = n + 1
        mark = "[bold red]" if c.breaches else ""
        table.add_row(
            a.dimension,
            a.key,
            f"{b.share:.2%}" if b is not None else "n/a",
            f"{mark}{a.share:.2%}",
            f"{a.limit:.2%}" if a.limit is not None else "none",
            "yes" if b is not None and b.breached else "no",
            f"{mark}{'yes' if a.breached else 'no'}",
        )
    _console().print(table)
    new = [f"{c.after.dimension}:{c.after.key}" for c in changes if c.breaches]
    _console().print(f"concentration breaches after the shock: {', '.join(new) or 'none'}")


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = SCHEMAS,
) -> None:
    """Write a JSON Schema per message type and the AsyncAPI 3.0 document of every topic (with real examples)."""
    from monitor.contract import write_documents

    for path in write_documents(out):
        print(path)


def main() -> None:
    """Entry point that turns configuration errors into one clear line."""
    try:
        app()
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()

"""Rulebooks: YAML files of CEL rules, validated as a whole with line-numbered errors.

A rulebook is rejected whole when any rule is wrong; every problem is reported
as ``file:line: reason``. Conditions are CEL (Common Expression Language,
https://github.com/google/cel-spec) compiled once with the
``common-expression-language`` bindings and *type-checked by evaluation*
against a typed example of the facts of the rule's scope (``docs/rules.md``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import cel
import yaml

from monitor.errors import RulebookError
from monitor.schemas import DIMENSIONS, Scope, Severity
from rules.celtypes import CelTypeError, check_types
from rules.classification import ClassificationPolicy, parse_classification
from rules.concentration import ConcentrationPolicy, parse_concentration

__all__ = [
    "Rule",
    "Rulebook",
    "example_facts",
    "load_rulebook",
    "parse_duration",
    "parse_rulebook",
    "render_summary",
]

SEVERITIES = ("info", "warning", "critical")
SCOPES = ("loan", "asset")
ACTIONS = ("none", "margin_call", "watch_list")
MODES = ("active", "shadow")
RULE_KEYS = {
    "id",
    "scope",
    "severity",
    "when",
    "for",
    "keep_firing_for",
    "resolve_when",
    "action",
    "inhibits",
    "summary",
    "mode",
    "description",
}
BOOK_KEYS = {"rulebook", "version", "description", "rules", "classification", "concentration"}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_TEMPLATE = re.compile(r"\{\{\s*([a-z_][a-z0-9_.]*)\s*(?:\|\s*([a-z_]+)\s*)?\}\}")


def parse_duration(text: str) -> float:
    """Parse ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` into seconds.

    Raises
    ------
    ValueError
        When the text is not a sequence of ``<n>d``, ``<n>h``, ``<n>m``, ``<n>s`` in that order.

    Examples
    --------
    >>> parse_duration("1h30m")
    5400.0
    """
    m = _DURATION.match(str(text).strip())
    if not m or not any(m.groups()):
        msg = f"got {text!r}, expected a duration such as '0s', '15m', '1h30m' or '2d'"
        raise ValueError(msg)
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


@dataclass(frozen=True)
class Rule:
    """One compiled rule (see ``docs/rules.md`` for every field).

    Attributes
    ----------
    for_s, keep_firing_for_s
        ``for`` and ``keep_firing_for`` in seconds (event time).
    summary
        Language -> template (``zh`` and ``en``; one given means used for both).
    """

    id: str
    scope: Scope
    severity: Severity
    when: str
    for_s: float
    keep_firing_for_s: float
    resolve_when: str | None
    action: str
    inhibits: tuple[str, ...]
    summary: dict[str, str]
    mode: str
    line: int
    program: Any = field(repr=False, compare=False)
    resolve_program: Any = field(repr=False, compare=False)

    @property
    def shadow(self) -> bool:
        """True for ``mode: shadow`` (recorded, never notified, never a margin call)."""
        return self.mode == "shadow"


@dataclass(frozen=True)
class Rulebook:
    """A validated rulebook: name, version and rules in evaluation order (inhibitors first).

    ``classification`` is the bank's policy of the suggested risk category (its ``classification:``
    section; every default when absent, ``rules.classification``); ``concentration`` its limits on the
    portfolio's concentration (``concentration:``, ``rules.concentration``).
    """

    name: str
    version: int
    rules: tuple[Rule, ...]
    source: str
    classification: ClassificationPolicy = field(default_factory=ClassificationPolicy)
    concentration: ConcentrationPolicy = field(default_factory=ConcentrationPolicy)
    _by_scope: dict[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    _inhibitors: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # computed once: evaluation looks these up for every rule of every evaluation
        by_scope = {s: tuple(r for r in self.rules if r.scope == s) for s in SCOPES}
        # a shadow rule never changes live behaviour, so it inhibits nothing
        inhibitors = {r.id: tuple(o.id for o in self.rules if r.id in o.inhibits and not o.shadow) for r in self.rules}
        object.__setattr__(self, "_by_scope", by_scope)
        object.__setattr__(self, "_inhibitors", inhibitors)

    def for_scope(self, scope: str) -> tuple[Rule, ...]:
        """The rules of one scope (``loan`` or ``asset``) in evaluation order."""
        return self._by_scope.get(scope, ())

    def inhibitors_of(self, rule_id: str) -> tuple[str, ...]:
        """Ids of the rules that inhibit ``rule_id`` on the same subject."""
        return self._inhibitors.get(rule_id, ())


def example_facts(scope: str) -> dict[str, Any]:
    """A typed example of the facts a rule of ``scope`` sees (used to type-check conditions).

    Examples
    --------
    >>> sorted(example_facts("asset"))
    ['asset', 'loan', 'now', 'window']
    """
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    facts: dict[str, Any] = {
        "loan": {
            "id": "L1",
            "outstanding": 7_000_000.0,
            "currency": "CNY",
            "thresholds": {"warning": 1.3, "margin_call": 1.2, "close_out": 1.1},
            "collateral_value": 10_000_000.0,
            "collateral_value_lower": 9_500_000.0,
            "coverage_ratio": 1.43,
            "coverage_ratio_lower": 1.36,
            "ltv": 0.7,
            "days_past_due": 0.0,
            "suggested_category": "normal",
            "in_restructuring_observation": False,
            "below_warning_seconds": 0.0,
            "seconds_since_margin_call": 1e18,
            "on_watch_list": False,
            "warnings_30d": 0.0,
            "group_others_on_watch_list": 0.0,
            "required_top_up_collateral": 0.0,
            "required_repayment": 0.0,
            "calibrating": False,
            "in_silence_grace": False,
        },
        "window": {"start": now, "end": now},
        "now": now,
    }
    if scope == "asset":
        facts["asset"] = {
            "id": "A1",
            "profile": "bus_dispatch",
            "status": "active",
            "value": 1_000_000.0,
            "value_lower": 900_000.0,
            "value_upper": 1_100_000.0,
            "appraisal_value": 1_000_000.0,
            "activity": 10.0,
            "activity_expected": 10.0,
            "activity_index": 1.0,
            "quality_score": 0.9,
            "quality": dict.fromkeys(DIMENSIONS, 0.9),
            "anomaly_score": 0.1,
            "anomalous": False,
            "drift": "none",
            "last_event_age_seconds": 0.0,
            "silent_in_service_seconds": 0.0,
            "silent_alone_seconds": 0.0,
            "in_silence_grace": False,
            "activity_shortfall": False,
            "shortfall_ratio": 1.0,
            "service_expected": True,
            "events_in_window": 10.0,
            "windows_seen": 10.0,
        }
    return facts


def _lookup(facts: dict[str, Any], path: str) -> Any:
    cur: Any = facts
    for part in path.split("."):
        cur = cur[part]
    return cur


def _fmt(value: Any, flt: str | None) -> str:
    if value is None:
        return "n/a"
    if flt == "pct":
        return f"{float(value) * 100:.1f}%"
    if flt in ("yuan", "yuan_up"):
        # whole yuan in decimal: half-up for a value (never half-to-even), up for a demand, so a notice
        # never asks for less than the demand (case C26)
        whole = Decimal(repr(float(value))).quantize(Decimal(1), ROUND_CEILING if flt == "yuan_up" else ROUND_HALF_UP)
        return f"¥{whole:,}"
    if flt == "num":
        return f"{float(value):,.2f}"
    if flt == "dur":
        minutes = int(float(value) // 60)
        return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


#: the summary filters (docs/rules.md)
FILTERS = ("pct", "yuan", "yuan_up", "num", "dur")


def render_summary(template: str, facts: dict[str, Any]) -> str:
    """Fill ``{{ path | filter }}`` placeholders from the facts (filters: :data:`FILTERS`).

    Raises
    ------
    KeyError
        When a path names no fact.
    ValueError
        When a filter is not one of :data:`FILTERS`.

    Examples
    --------
    >>> render_summary("cov {{ loan.coverage_ratio | pct }}", {"loan": {"coverage_ratio": 1.234}})
    'cov 123.4%'
    """
    for m in _TEMPLATE.finditer(template):
        if m.group(2) is not None and m.group(2) not in FILTERS:
            raise ValueError(f"unknown filter {m.group(2)!r}, expected one of {', '.join(FILTERS)}")
    return _TEMPLATE.sub(lambda m: _fmt(_lookup(facts, m.group(1)), m.group(2)), template)


def _lines(node: yaml.Node) -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            out[str(k.value)] = k.start_mark.line + 1
    return out


def _check_condition(expr: Any, what: str, scope: str, where: str, problems: list[str]) -> Any:
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{where}: {what}: got {expr!r}, expected a CEL expression string")
        return None
    try:
        program = cel.compile(expr)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        problems.append(f"{where}: {what}: CEL syntax error: {first}")
        return None
    facts = example_facts(scope)
    try:  # every sub-expression, also those the example facts never reach behind a guard (C27)
        type_problems = check_types(expr, facts)
    except CelTypeError as exc:
        type_problems = [f"cannot be type-checked ({exc}); expected CEL the checker reads (docs/rules.md)"]
    if type_problems:
        for p in type_problems:
            unknown = p.endswith("that does not exist")
            problems.append(
                f"{where}: {what}: {p} for scope {scope!r}" if unknown else f"{where}: {what}: type error: {p}"
            )
        return None
    ctx = cel.Context()
    ctx.update(facts)
    try:
        result = program.execute(ctx)
    except KeyError as exc:
        problems.append(f"{where}: {what}: refers to fact {exc} that does not exist for scope {scope!r}")
        return None
    except (TypeError, RuntimeError, ValueError, ZeroDivisionError) as exc:
        first = str(exc).splitlines()[0]
        if "Undefined variable" in first:
            name = first.split("'")[1] if "'" in first else first
            problems.append(f"{where}: {what}: refers to fact '{name}' that does not exist for scope {scope!r}")
        else:
            problems.append(f"{where}: {what}: type error on example facts: {first}")
        return None
    if not isinstance(result, bool):
        problems.append(f"{where}: {what}: evaluates to {type(result).__name__}, expected bool")
        return None
    return program


def parse_rulebook(text: str, filename: str = "<rulebook>") -> Rulebook:
    """Parse and validate a rulebook; all problems are collected before raising.

    Parameters
    ----------
    text
        YAML source.
    filename
        Name used in error messages.

    Returns
    -------
    Rulebook

    Raises
    ------
    RulebookError
        With one ``file:line: reason`` per problem (YAML errors, unknown keys, duplicate ids,
        unknown severities / scopes / actions / modes, CEL syntax or type errors, unknown facts,
        ``inhibits`` naming no rule, bad durations, summary placeholders naming no fact, a
        ``classification:`` section with unknown keys, categories or periods, a ``concentration:``
        section with unknown keys or shares outside 0..1).
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
        raise RulebookError([f"{filename}:{line}: YAML error: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(root, yaml.MappingNode):
        raise RulebookError([f"{filename}:1: expected a mapping with keys rulebook, version, rules"])
    data = yaml.safe_load(text)
    problems: list[str] = []
    top = _lines(root)
    for key in data:
        if key not in BOOK_KEYS:
            problems.append(f"{filename}:{top[key]}: unknown key {key!r}, expected one of {sorted(BOOK_KEYS)}")
    name = data.get("rulebook")
    version = data.get("version")
    if not isinstance(name, str) or not name:
        problems.append(f"{filename}:{top.get('rulebook', 1)}: rulebook: got {name!r}, expected a name")
    if not isinstance(version, int) or isinstance(version, bool):
        problems.append(f"{filename}:{top.get('version', 1)}: version: got {version!r}, expected an integer")
    raw_rules = data.get("rules")
    rules_node = next((v for k, v in root.value if k.value == "rules"), None)
    if not isinstance(raw_rules, list) or not isinstance(rules_node, yaml.SequenceNode):
        problems.append(f"{filename}:{top.get('rules', 1)}: rules: expected a list of rules")
        raise RulebookError(problems)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for raw, node in zip(raw_rules, rules_node.value, strict=True):
        line = node.start_mark.line + 1
        keys = _lines(node)
        where = f"{filename}:{line}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: a rule must be a mapping")
            continue
        for key in raw:
            if key not in RULE_KEYS:
                problems.append(
                    f"{filename}:{keys[key]}: unknown key {key!r} in rule, expected one of {sorted(RULE_KEYS)}"
                )
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid:
            problems.append(f"{where}: id: got {rid!r}, expected a rule id")
            rid = f"<rule at line {line}>"
        elif rid in seen:
            problems.append(f"{where}: duplicate rule id {rid!r} (first at line {seen[rid]})")
        seen.setdefault(rid, line)

        def at(key: str, _keys: dict[str, int] = keys, _line: int = line) -> str:
            return f"{filename}:{_keys.get(key, _line)}"

        scope = raw.get("scope", "loan")
        if scope not in SCOPES:
            problems.append(f"{at('scope')}: scope: got {scope!r}, expected one of {list(SCOPES)}")
            scope = "loan"
        severity = raw.get("severity", "warning")
        if severity not in SEVERITIES:
            problems.append(f"{at('severity')}: severity: got {severity!r}, expected one of {list(SEVERITIES)}")
        action = raw.get("action", "none")
        if action not in ACTIONS:
            problems.append(f"{at('action')}: action: got {action!r}, expected one of {list(ACTIONS)}")
        if action == "margin_call" and scope != "loan":
            problems.append(f"{at('action')}: action margin_call needs scope 'loan', got {scope!r}")
        mode = raw.get("mode", "active")
        if mode not in MODES:
            problems.append(f"{at('mode')}: mode: got {mode!r}, expected one of {list(MODES)}")
        durations = {}
        for key in ("for", "keep_firing_for"):
            try:
                durations[key] = parse_duration(raw.get(key, "0s"))
            except ValueError as exc:
                problems.append(f"{at(key)}: {key}: {exc}")
                durations[key] = 0.0
        program = _check_condition(raw.get("when"), "when", scope, at("when"), problems)
        resolve = raw.get("resolve_when")
        resolve_program = (
            _check_condition(resolve, "resolve_when", scope, at("resolve_when"), problems)
            if resolve is not None
            else None
        )
        inhibits = raw.get("inhibits", [])
        if not isinstance(inhibits, list) or not all(isinstance(i, str) for i in inhibits):
            problems.append(f"{at('inhibits')}: inhibits: got {inhibits!r}, expected a list of rule ids")
            inhibits = []
        summary = raw.get("summary", rid)
        given: dict[str, Any] = {"": summary} if isinstance(summary, str) else summary  # "": one text, both languages
        if (
            not isinstance(summary, str | dict)
            or not summary
            or (isinstance(summary, dict) and set(summary) - {"zh", "en"})
        ):
            problems.append(f"{at('summary')}: summary: expected a string or a mapping with keys zh and/or en")
            given, summary = {}, {"zh": rid, "en": rid}
        # each text the author wrote is checked once, named by the language it was written for
        for lang, tmpl in given.items():
            try:
                render_summary(str(tmpl), example_facts(scope))
            except KeyError as exc:
                where = f"summary ({lang})" if lang else "summary"
                problems.append(
                    f"{at('summary')}: {where}: placeholder names fact {exc} that does not exist for scope {scope!r}"
                )
            except ValueError as exc:
                where = f"summary ({lang})" if lang else "summary"
                problems.append(f"{at('summary')}: {where}: {exc}")
        if isinstance(summary, str):
            summary = {"zh": summary, "en": summary}
        summary = {"zh": summary.get("zh", summary.get("en", rid)), "en": summary.get("en", summary.get("zh", rid))}
        rules.append(
            Rule(
                id=rid,
                scope=scope,
                severity=severity,
                when=str(raw.get("when")),
                for_s=durations["for"],
                keep_firing_for_s=durations["keep_firing_for"],
                resolve_when=resolve,
                action=action,
                inhibits=tuple(inhibits),
                summary={k: str(v) for k, v in summary.items()},
                mode=mode,
                line=line,
                program=program,
                resolve_program=resolve_program,
            )
        )
    ids = {r.id for r in rules}
    for r in rules:
        for target in r.inhibits:
            if target not in ids:
                problems.append(f"{filename}:{r.line}: inhibits: rule {target!r} does not exist")
            elif target == r.id:
                problems.append(f"{filename}:{r.line}: inhibits: a rule cannot inhibit itself")

    def section(name: str, parse: Callable[..., Any]) -> Any:
        # a policy section of the rulebook, parsed with the line of each of its keys for the errors
        node = next((v for k, v in root.value if k.value == name), None)
        return parse(data.get(name), _lines(node) if node is not None else {}, filename, top.get(name, 1), problems)

    policy = section("classification", parse_classification)
    limits = section("concentration", parse_concentration)
    if problems:
        raise RulebookError(problems)
    order = sorted(rules, key=lambda r: (not r.inhibits, -SEVERITIES.index(r.severity), r.line))
    return Rulebook(
        name=str(name),
        version=int(version),
        rules=tuple(order),
        source=text,
        classification=policy,
        concentration=limits,
    )


def load_rulebook(path: str | Path) -> Rulebook:
    """Read and validate a rulebook file (see :func:`parse_rulebook`).

    Raises
    ------
    RulebookError
        On any problem, including a file that cannot be read.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        # no line: there is no file to point into
        raise RulebookError([f"{p}: cannot read rulebook: {exc.strerror}"]) from None
    return parse_rulebook(text, str(p))

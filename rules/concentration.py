"""The rulebook's ``concentration:`` section: the bank's limits on the portfolio's concentration.

A limit is a share of the portfolio (a ratio 0..1) per dimension (``borrower_group``,
``asset_profile``, ``region``), with optional per-key overrides; the share measured against it is
the key's *uncovered* exposure over the portfolio's exposure (``monitor.core.portfolio``). The
limits are the bank's own policy. Their defaults borrow the scale of the CBIRC's 2018
《商业银行大额风险暴露管理办法》 (a non-bank client group's exposure at most 15 % of tier-1 capital
after eligible credit-risk mitigation, 25 % for a group of connected interbank clients) as an
analogy only: with tier-1 capital at about a tenth of exposures, 15 % of capital is about 1.5 % of
the portfolio (docs/rules.md, *Concentration*).

Examples
--------
>>> p = parse_concentration({"region": {"max_share": 0.1}}, {}, "book.yaml", 3, problems := [])
>>> (p.limit("region", "NZ-AUK"), p.limit("borrower_group", "G1"), problems)
(0.1, 0.015, [])
>>> _ = parse_concentration({"region": {"max_share": 1.5}}, {"region": 4}, "book.yaml", 3, problems)
>>> print(problems[0].replace(" of the portfolio", ""))
book.yaml:4: concentration.region.max_share: got 1.5, expected a share above 0 and at most 1, or null (no limit)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.schemas import CONCENTRATION_DIMENSIONS

__all__ = ["DEFAULT_LIMITS", "ConcentrationPolicy", "DimensionLimit", "parse_concentration"]

#: Default limit per dimension (share of the portfolio's exposure left uncovered by collateral, 0..1),
#: each with its reason in docs/rules.md: a borrower group 1.5 % (15 % of tier-1 capital under the
#: 2018 large-exposure measures, tier-1 capital taken as a tenth of exposures: an analogy), an asset
#: profile or a region 5 % (collateral of one kind or one place fails together: one feed format, one
#: city's outage; the bank's policy).
DEFAULT_LIMITS: dict[str, float] = {"borrower_group": 0.015, "asset_profile": 0.05, "region": 0.05}
#: Default hysteresis: a breach resolves once the share is below ``limit × (1 − 0.1)``.
DEFAULT_HYSTERESIS = 0.1


@dataclass(frozen=True)
class DimensionLimit:
    """The limit of one dimension: a share 0..1 (``None``: no limit) and per-key overrides."""

    max_share: float | None
    keys: dict[str, float | None] = field(default_factory=dict)


def _defaults() -> dict[str, DimensionLimit]:
    return {d: DimensionLimit(DEFAULT_LIMITS[d]) for d in CONCENTRATION_DIMENSIONS}


@dataclass(frozen=True)
class ConcentrationPolicy:
    """The concentration limits of a rulebook.

    Attributes
    ----------
    dimensions
        Dimension -> its :class:`DimensionLimit`.
    hysteresis
        Relative gap (0..0.5) below a limit at which a breach resolves: a share hovering at the
        limit is one breach, not one per crossing (as classification's held lines).
    severity
        Severity of a breach alert.
    """

    dimensions: dict[str, DimensionLimit] = field(default_factory=_defaults)
    hysteresis: float = DEFAULT_HYSTERESIS
    severity: str = "warning"

    def limit(self, dimension: str, key: str) -> float | None:
        """The limit (share 0..1) of ``key`` in ``dimension``: its override, else the dimension's, else ``None``."""
        d = self.dimensions.get(dimension)
        if d is None:
            return None
        return d.keys[key] if key in d.keys else d.max_share

    def resolve_below(self, limit: float) -> float:
        """The share below which a breach of ``limit`` resolves: ``limit × (1 − hysteresis)``."""
        return limit * (1.0 - self.hysteresis)


def _share(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and 0.0 < float(value) <= 1.0
    )


_SHARE = "a share of the portfolio above 0 and at most 1, or null (no limit)"


def parse_concentration(
    raw: Any, lines: dict[str, int], filename: str, line: int, problems: list[str]
) -> ConcentrationPolicy:
    """Validate a rulebook's ``concentration:`` mapping; problems are appended, defaults kept for bad keys.

    Parameters
    ----------
    raw
        The section as loaded from YAML (``None`` when absent: every default).
    lines
        Key -> line number in the file (the section's direct keys), for the messages.
    filename, line
        The file, and the line of the ``concentration:`` key.
    problems
        Receives one ``file:line: concentration.<key>: got <value>, expected <...>`` per problem.

    Returns
    -------
    ConcentrationPolicy
        The policy, with the default for every key missing or wrong.
    """
    if raw is None:
        return ConcentrationPolicy()
    if not isinstance(raw, dict):
        problems.append(f"{filename}:{line}: concentration: got {raw!r}, expected a mapping of dimension -> limit")
        return ConcentrationPolicy()
    dims = _defaults()
    hysteresis = DEFAULT_HYSTERESIS
    severity = "warning"
    allowed = (*CONCENTRATION_DIMENSIONS, "hysteresis", "severity")
    for key, value in raw.items():
        at = f"{filename}:{lines.get(str(key), line)}: concentration.{key}"
        if key == "hysteresis":
            ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 0.5
            if ok:
                hysteresis = float(value)
            else:
                problems.append(f"{at}: got {value!r}, expected a relative gap from 0 to 0.5 (0.1 = resolve at 90 %)")
        elif key == "severity":
            if value in ("info", "warning", "critical"):
                severity = value
            else:
                problems.append(f"{at}: got {value!r}, expected one of info, warning, critical")
        elif key not in CONCENTRATION_DIMENSIONS:
            problems.append(f"{at}: unknown key, expected one of {', '.join(allowed)}")
        elif not isinstance(value, dict):
            problems.append(f"{at}: got {value!r}, expected a mapping with max_share and optional keys")
        else:
            dims[key] = _dimension(key, value, at, problems)
    return ConcentrationPolicy(dimensions=dims, hysteresis=hysteresis, severity=severity)


def _dimension(name: str, value: dict[str, Any], at: str, problems: list[str]) -> DimensionLimit:
    """One dimension's ``{max_share, keys}``; problems appended (the default kept for a bad share)."""
    max_share: float | None = DEFAULT_LIMITS[name]
    overrides: dict[str, float | None] = {}
    for k, v in value.items():
        if k == "max_share":
            if _share(v):
                max_share = None if v is None else float(v)
            else:
                problems.append(f"{at}.max_share: got {v!r}, expected {_SHARE}")
        elif k == "keys":
            if not isinstance(v, dict):
                problems.append(f"{at}.keys: got {v!r}, expected a mapping of {name} -> share")
                continue
            for key, share in v.items():
                if _share(share):
                    overrides[str(key)] = None if share is None else float(share)
                else:
                    problems.append(f"{at}.keys.{key}: got {share!r}, expected {_SHARE}")
        else:
            problems.append(f"{at}.{k}: unknown key, expected max_share or keys")
    return DimensionLimit(max_share, overrides)

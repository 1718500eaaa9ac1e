"""The rulebook's ``classification:`` section: the bank's policy floors of the suggested risk category.

The five categories and the days-past-due floors are regulation (《商业银行金融资产风险分类办法》,
CBIRC & PBOC Order 2023 No. 1) and are not configurable. What the monitor's own signals (the
watch list, coverage below the warning line, margin calls, the close-out line) imply for the category
is the bank's credit policy: each signal's floor is set here, ``normal`` switching it off. The
restructuring floor may be made stricter than the Measures' minimum (special mention), never looser,
and the default observation period may be made longer than their one year, never shorter.

Examples
--------
>>> p = parse_classification({"close_out": "doubtful"}, {}, "book.yaml", 3, problems := [])
>>> (p.close_out, p.below_warning, problems)
('doubtful', 'special_mention', [])
>>> _ = parse_classification({"watch_list": "amber"}, {"watch_list": 4}, "book.yaml", 3, problems)
>>> print(problems[0].replace("normal, special_mention, ", ""))
book.yaml:4: classification.watch_list: got 'amber', expected one of substandard, doubtful, loss
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, cast

from monitor.schemas import CATEGORIES, Category

__all__ = ["MIN_OBSERVATION_DAYS", "ClassificationPolicy", "parse_classification", "rank"]

#: The Measures' shortest observation period of a restructured loan: one year (days).
MIN_OBSERVATION_DAYS = 365
#: Longest default observation period accepted (ten years): beyond it a typo is likelier than a policy.
MAX_OBSERVATION_DAYS = 3650


def rank(category: Category) -> int:
    """Severity of a category: 0 for ``normal`` up to 4 for ``loss``.

    Examples
    --------
    >>> rank("normal"), rank("loss")
    (0, 4)
    """
    return CATEGORIES.index(category)


@dataclass(frozen=True)
class ClassificationPolicy:
    """The bank's floors of the suggested category, one per monitor signal (``normal``: no floor).

    Attributes
    ----------
    watch_list
        While the loan is on the watch list (any ``action: watch_list`` rule fires). Default normal
        (no floor): the list gathers early-warning indicators, some of them operational (the shipped
        ``watch-feed-dark``: a pledged feed dark for 2 h), that say nothing yet of the borrower's
        ability to repay, and a suggestion of 关注 for each would be noise a credit committee learns to
        ignore; the signals that do bear on it (coverage below the warning line, a margin call) have
        floors of their own. A bank whose policy puts every listed loan in 关注 sets ``special_mention``.
    below_warning
        While the coverage ratio is below the contract's warning line. Default special mention:
        the collateral no longer covers the loan as agreed, a factor that may hurt repayment.
    margin_call_open
        While a margin call is issued and neither cured, expired nor withdrawn. Default special mention.
    margin_call_expired
        While a margin call has expired unmet and its close-out alert fires (coverage not back above
        the warning line). Default substandard: the borrower could not restore the collateral, and
        the bank turns to disposing of it.
    close_out
        While the coverage ratio is below the close-out line. Default substandard, as above.
    restructured
        During a restructuring's observation period; at least special mention (the Measures'
        minimum for a loan performing before its restructuring). A bank keeping the stricter
        practice of the 2007 loan-classification guidelines sets ``substandard``.
    observation_days
        Observation period, days after ``restructured_on``, when a ``loan_restructured`` event
        gives no ``observation_end``; at least 365 (the Measures' one year).
    """

    watch_list: Category = "normal"
    below_warning: Category = "special_mention"
    margin_call_open: Category = "special_mention"
    margin_call_expired: Category = "substandard"
    close_out: Category = "substandard"
    restructured: Category = "special_mention"
    observation_days: int = MIN_OBSERVATION_DAYS


_KEYS = tuple(f.name for f in fields(ClassificationPolicy))


def parse_classification(
    raw: Any, lines: dict[str, int], filename: str, line: int, problems: list[str]
) -> ClassificationPolicy:
    """Validate a rulebook's ``classification:`` mapping; problems are appended, defaults kept for bad keys.

    Parameters
    ----------
    raw
        The section as loaded from YAML (``None`` when absent: every default).
    lines
        Key -> line number in the file, for the messages.
    filename, line
        The file, and the line of the ``classification:`` key.
    problems
        Receives one ``file:line: classification.<key>: got <value>, expected <...>`` per problem.

    Returns
    -------
    ClassificationPolicy
        The policy, with the default for every key missing or wrong.
    """
    if raw is None:
        return ClassificationPolicy()
    if not isinstance(raw, dict):
        problems.append(f"{filename}:{line}: classification: got {raw!r}, expected a mapping of signal -> category")
        return ClassificationPolicy()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{filename}:{lines.get(str(key), line)}: classification.{key}"
        if key not in _KEYS:
            problems.append(f"{where}: unknown key, expected one of {', '.join(_KEYS)}")
        elif key == "observation_days":
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok or not MIN_OBSERVATION_DAYS <= value <= MAX_OBSERVATION_DAYS:
                problems.append(
                    f"{where}: got {value!r}, expected whole days from {MIN_OBSERVATION_DAYS} (the Measures' "
                    f"one year) to {MAX_OBSERVATION_DAYS}"
                )
            else:
                values[key] = value
        elif value not in CATEGORIES:
            problems.append(f"{where}: got {value!r}, expected one of {', '.join(CATEGORIES)}")
        elif key == "restructured" and rank(cast(Category, value)) < rank("special_mention"):
            problems.append(
                f"{where}: got {value!r}, expected special_mention or more severe (the Measures' minimum "
                "for a restructured loan)"
            )
        else:
            values[key] = value
    return ClassificationPolicy(**values)

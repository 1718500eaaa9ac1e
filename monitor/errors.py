"""One error convention for pledgewatch (after Quix ``exceptions/``, faust ``FaustError``).

Every error a user can act on names the field, the value and what was expected.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FileProblems",
    "InputRejected",
    "PledgewatchError",
    "ProfileError",
    "RulebookError",
]


class PledgewatchError(Exception):
    """Root of every error pledgewatch raises on purpose."""


class ConfigError(PledgewatchError, ValueError):
    """A setting, loan book or asset profile is wrong: the message names field, value and expectation."""


class FileProblems(PledgewatchError, ValueError):
    """A file (rulebook, asset profile) failed validation, with every problem found.

    Parameters
    ----------
    problems
        One ``"file:line: reason"`` string per problem found; the message joins them by lines.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RulebookError(FileProblems):
    """A rulebook failed validation (``problems``: one ``file:line: reason`` each)."""


class InputRejected(PledgewatchError, ValueError):
    """A telemetry or loan record cannot be used; it goes to the dead-letter topic.

    Parameters
    ----------
    reason
        A reason code of :data:`monitor.schemas.REASON_CODES`.
    message
        One line naming the field, the value and what was expected.
    asset_id
        The asset the record names, when it could be read (for quality accounting).
    """

    def __init__(self, reason: str, message: str, asset_id: str | None = None) -> None:
        self.reason = reason
        self.message = message
        self.asset_id = asset_id
        super().__init__(f"{reason}: {message}")


class ProfileError(FileProblems, ConfigError):
    """An asset-profile file failed validation (``problems``: one ``file:line: reason`` each)."""

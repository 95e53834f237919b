"""The errors hkops raises for bad input and refused operations.

Every error carries a message meant for the person at the console or the CLI; the CLI
turns any :class:`HkopsError` into a one-line reason on stderr and exit status 2.
"""

from __future__ import annotations


class HkopsError(Exception):
    """Base of every error that is the user's to fix (bad input, illegal move)."""


class InvalidValue(HkopsError, ValueError):
    """A value failed validation. Names the field, the value and the reason."""

    def __init__(self, field: str, value: object, reason: str, *, line: int | None = None):
        self.field = field
        self.value = value
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{field} {value!r}: {reason}")


class InvalidValues(HkopsError):
    """Several values were bad; none was applied. ``problems`` lists every one."""

    noun = "bad value(s)"
    outcome = "nothing applied"

    def __init__(self, source: str, problems: list[InvalidValue]):
        self.source = source
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{source}: {len(problems)} {self.noun}, {self.outcome}: {shown}{more}")

    def summary(self) -> str:
        """One line: where, how many, and that nothing was applied."""
        return f"{self.source}: {len(self.problems)} {self.noun}; {self.outcome}"


class InvalidFile(InvalidValues):
    """A file had bad lines; nothing from it was imported. ``problems`` lists every one."""

    noun = "bad line(s)"
    outcome = "nothing imported"

    @property
    def path(self) -> str:
        return self.source


class NotFound(HkopsError, LookupError):
    """The thing asked for does not exist."""


class IllegalTransition(HkopsError):
    """A lifecycle move that the state machine does not allow from the current state."""


class Conflict(HkopsError):
    """The move is allowed in general but not now (held by someone else, too early...)."""

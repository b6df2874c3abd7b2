"""The exceptions of deft-ray.

Every error a user can cause derives from :class:`DeftRayError`. The CLI turns one into a single
line on stderr and exit status 2; the message names the field, the value and the fix.
"""

from __future__ import annotations


class DeftRayError(Exception):
    """Base class of every deft-ray error.

    ``__reduce__`` rebuilds the exception from its message, so it survives being raised in a Ray
    actor and re-raised in the driver. ``exit_code`` is what the CLI exits with: 2 for bad input,
    1 for a run that failed.
    """

    exit_code = 2

    def __reduce__(self):
        return (_rebuild, (type(self), str(self)))


def _rebuild(cls, message):
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class InputError(DeftRayError, ValueError):
    """A value given by the user is wrong.

    Example scenario: an Instance JSON whose ``bandwidth_hz`` is ``0``.
    """

    def __init__(self, field: str, value: object, problem: str, fix: str):
        super().__init__(f"{field} = {_short(value)}: {problem}; {fix}")
        self.field = field


class InfeasibleError(DeftRayError):
    """No allocation satisfies the constraints of the problem.

    Example scenario: 12 blocks and 10 devices under the one-block-per-device matching, or a block
    whose memory need exceeds every device's budget.
    """


class UnknownNameError(DeftRayError, ValueError):
    """A name (scheme, task, experiment) is not registered; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")


class TooLargeError(DeftRayError):
    """An exact method was asked to solve an instance beyond its size limit."""


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

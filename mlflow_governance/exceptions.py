"""The plugin's one error hierarchy.

Every class here exists because a caller needs to tell it apart from the others: REST
clients get a different HTTP status for each, and the CLI a different exit code. The
classes hold structured fields and build the explanation from them, so a refusal always
says what was asked, why it was refused and what would allow it. Nothing here imports
MLflow: the conversion to ``MlflowException`` lives in :mod:`mlflow_governance.mlflow_errors`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


class GovernanceError(Exception):
    """Base class of every error the plugin raises on purpose.

    Attributes:
        error_code: The MLflow error code name the REST layer reports.
    """

    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PermissionDenied(GovernanceError):
    """A policy refused an action; the message names who, what, the rule and the way out."""

    error_code = "PERMISSION_DENIED"

    def __init__(
        self,
        *,
        actor: str,
        action: str,
        resource: str,
        reason: str,
        rule: str | None = None,
        hint: str | None = None,
        request_id: int | None = None,
    ) -> None:
        self.actor = actor
        self.action = action
        self.resource = resource
        self.reason = reason
        self.rule = rule
        self.hint = hint
        self.request_id = request_id
        parts = [f"Refused: {actor} may not {action} on {resource}: {reason}"]
        if rule:
            parts.append(f"(rule: {rule})")
        text = " ".join(parts) + "."
        if hint:
            text += f" {hint}"
        super().__init__(text)


class InvalidRequest(GovernanceError):
    """The caller asked for something malformed or impossible (HTTP 400)."""

    error_code = "INVALID_PARAMETER_VALUE"


class NotFound(GovernanceError):
    """A request, model or audit row does not exist (HTTP 404)."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


class Conflict(GovernanceError):
    """The action clashes with the current state, e.g. approving a closed request (HTTP 409).

    Not ``INVALID_STATE``: MLflow answers that with 500, which clients retry.
    """

    error_code = "RESOURCE_CONFLICT"


class ConfigurationError(GovernanceError):
    """The store cannot start: an unknown URI scheme, an unreachable or too-new database."""

    error_code = "INVALID_PARAMETER_VALUE"


class Unreachable(GovernanceError):
    """The governance server could not be reached or answered with something not JSON.

    The CLI gives it an exit code of its own: the action may simply be retried.
    """

    error_code = "TEMPORARILY_UNAVAILABLE"


class TimedOut(GovernanceError):
    """Waiting (``promote --wait``) ended before the request was applied or closed."""

    error_code = "RESOURCE_CONFLICT"


@dataclasses.dataclass(frozen=True)
class PolicyIssue:
    """One problem found in a policy file, pinned to where it is.

    Attributes:
        file: The file name (or ``<string>``).
        line: 1-based line, or 0 when unknown.
        column: 1-based column, or 0 when unknown.
        field: The dotted path of the field, e.g. ``gates.production.approvals.required``.
        message: What is wrong.
        valid: The valid values, when there is a closed set.
    """

    file: str
    line: int
    column: int
    field: str
    message: str
    valid: Sequence[str] = dataclasses.field(default_factory=tuple)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = f"{where}: {self.field}: {self.message}"
        if self.valid:
            text += f" (valid: {', '.join(self.valid)})"
        return text


class PolicyFileError(InvalidRequest):
    """A policy file failed validation; carries every issue found, not just the first."""

    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        self.issues = tuple(issues)
        count = len(self.issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"Invalid policy: {count} {noun}:\n{lines}")


class AuditIntegrityError(GovernanceError):
    """The audit chain failed verification; names the first broken row."""

    error_code = "INVALID_STATE"

    def __init__(self, message: str, row_id: int | None = None) -> None:
        self.row_id = row_id
        super().__init__(message)


class AuditWriteError(GovernanceError):
    """The audit row could not be written, so the change it describes was not applied."""

    error_code = "TEMPORARILY_UNAVAILABLE"


class GovernanceWarning(UserWarning):
    """Warns about a configuration that records but does not enforce.

    A warning, not an error: the call goes on under the audit-only default, but whoever
    runs the server should learn that nothing is refused.
    """


_BY_CODE: dict[str, type[GovernanceError]] = {
    "PERMISSION_DENIED": PermissionDenied,
    "INVALID_PARAMETER_VALUE": InvalidRequest,
    "RESOURCE_DOES_NOT_EXIST": NotFound,
    "RESOURCE_CONFLICT": Conflict,
    "TEMPORARILY_UNAVAILABLE": Unreachable,
}


def error_from_code(code: str | None, message: str) -> GovernanceError:
    """Rebuild the plugin error a server reported as ``{"error_code", "message"}``.

    The message is kept as the server wrote it; the class is chosen by the code so a
    remote caller tells refusals, bad input, missing things and conflicts apart as a
    local caller does.

    Args:
        code: MLflow's error code name from the response body.
        message: The server's message.

    Returns:
        An instance of the matching class (``GovernanceError`` for other codes).
    """
    cls = _BY_CODE.get(code or "", GovernanceError)
    error = cls.__new__(cls)
    GovernanceError.__init__(error, message)
    if code and cls is GovernanceError:
        error.error_code = code
    if isinstance(error, PermissionDenied):  # the parts stay on the server; the text says all
        error.actor = error.action = error.resource = error.reason = ""
        error.rule = error.hint = error.request_id = None
    return error

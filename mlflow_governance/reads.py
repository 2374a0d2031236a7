"""Read access in SQL: which model names a user may see, as a WHERE clause.

Search results must leave out models the user may not read while page sizes and page
tokens stay right, so the filter goes into the query MLflow builds (through the store's
workspace-clause hook), not over its results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from mlflow_governance.policy import Policy, Subject, model_globs_granting


def readable_globs(policy: Policy, subject: Subject) -> tuple[str, ...] | None:
    """The model-name globs ``subject`` may read; None means every model.

    Args:
        policy: The policy in force.
        subject: The reader.

    Returns:
        None when a binding grants ``read`` on ``*``; otherwise the globs (maybe empty).
    """
    # The policy engine scopes bindings by principal, model and workspace in one place.
    return model_globs_granting(policy, subject, "read")


def name_clause(column: Any, globs: Sequence[str], dialect: str) -> Any:
    """A SQL condition true for names matching any of the fnmatch-style ``globs``.

    ``*`` and ``?`` become LIKE wildcards (with the LIKE metacharacters escaped; LIKE is
    case-sensitive on PostgreSQL, and on SQLite MLflow's sessions make it so); a glob
    with a character class uses the dialect's own matcher (SQLite GLOB, a regular
    expression on PostgreSQL). On MySQL every glob is a binary regular expression, since
    its default collations compare without case.

    Args:
        column: The name column.
        globs: The globs.
        dialect: The SQLAlchemy dialect name.

    Returns:
        A boolean SQL expression (false when ``globs`` is empty).
    """
    if not globs:
        return sa.false()
    return sa.or_(*(_one(column, glob, dialect) for glob in globs))


def _one(column: Any, glob: str, dialect: str) -> Any:
    if dialect in ("mysql", "mariadb"):
        # MySQL compares with the column's collation, case-insensitive by default: '=' and
        # LIKE would let 'EXP-3' through for 'exp-*'. A binary regular expression does not.
        return column.op("REGEXP BINARY")("^" + _glob_to_regex(glob) + "$")
    if "[" not in glob:
        if "*" not in glob and "?" not in glob:
            return column == glob
        escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")
    if dialect == "sqlite":
        return column.op("GLOB")(glob.replace("[!", "[^"))
    return column.op("~")("^" + _glob_to_regex(glob) + "$")


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = glob[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)

"""Database errors that say "try the same transaction again", and the retry for them.

MariaDB/MySQL resolve a lock cycle by killing one of its transactions (error 1213) or give
up waiting (1205); PostgreSQL reports deadlocks (SQLSTATE 40P01) and serialisation
failures (40001). Nothing of such a transaction was committed, so running it again is
safe; the caller sees success, or the error once the attempts are spent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.exc
import tenacity

T = TypeVar("T")

_MYSQL_RETRY_CODES = frozenset({1205, 1213})
_POSTGRES_RETRY_STATES = frozenset({"40P01", "40001"})
#: Attempts in all, and the longest pause between two (seconds, with random jitter).
ATTEMPTS = 4
_MAX_PAUSE = 0.2
#: How far along ``__cause__`` to look (an MlflowException over a SQLAlchemy error over the
#: driver's is three deep).
_MAX_CAUSES = 5


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is a deadlock or serialisation failure.

    MLflow's managed session turns a database error into an ``MlflowException`` raised
    from it, so the database's own error is looked for along ``__cause__``.
    """
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < _MAX_CAUSES:
        if _is_transient_database_error(current):
            return True
        current, seen = current.__cause__, seen + 1
    return False


def _is_transient_database_error(exc: BaseException) -> bool:
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.DBAPIError):
        return False
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRY_CODES:
        return True
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state in _POSTGRES_RETRY_STATES


def run_again_if_transient(
    fn: Callable[[], T], before_again: Callable[[], None] | None = None
) -> T:
    """Run ``fn`` (one whole transaction), again after a deadlock, a few times at most.

    Args:
        fn: The transaction, from its first statement to its commit.
        before_again: Called before each further attempt, to undo what the failed one
            left in memory (decisions, hooks); the database already rolled it back.

    Raises:
        Exception: ``fn``'s error, when it is not transient or the attempts are spent.
    """
    # Most transactions succeed at once: the retry machinery is built only for those
    # that do not (it costs more than a governed write's own Python work).
    try:
        return fn()
    except Exception as exc:
        if not is_transient(exc) or ATTEMPTS < 2:
            raise
    if before_again is not None:
        before_again()
    _pause()
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(ATTEMPTS - 1),
        wait=tenacity.wait_random(0, _MAX_PAUSE),
        before_sleep=(lambda _state: before_again()) if before_again else None,
        reraise=True,
    )
    return retrying(fn)


def _pause() -> None:
    """The random pause before a second attempt, as tenacity makes the later ones."""
    time.sleep(random.uniform(0, _MAX_PAUSE))  # jitter, not a secret

"""Where the policy in force comes from, and how a change reaches every process.

Order (SPEC section 1): the file named by ``MLFLOW_GOVERNANCE_POLICY``; else the policy
last applied to the database with ``mlflow-governance policy apply``; else none, which
the store treats as the built-in ``audit-only`` default. A loaded policy is trusted for
``MLFLOW_GOVERNANCE_POLICY_REFRESH`` seconds (default 2); after that the file's
modification time (or the newest applied policy id) is checked again, so a change is
picked up by every process within a few seconds and no restart is needed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow_governance import config

if TYPE_CHECKING:
    from mlflow_governance.policy import Policy


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy with where it came from.

    Attributes:
        policy: The parsed policy.
        origin: ``file:<path>``, ``database:<id>`` or ``default``.
        stamp: What identifies this content (mtime or row id) for change detection.
    """

    policy: Policy
    origin: str
    stamp: object


#: Reads the newest applied policy from the database: (row id, YAML text) or None.
DatabaseReader = Callable[[], "tuple[int, str] | None"]


class PolicySource:
    """Gives the policy in force, reloading it when its source changes.

    Args:
        database_reader: Optional reader of the newest applied policy.
        clock: Monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        database_reader: DatabaseReader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_database = database_reader
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: LoadedPolicy | None = None
        self._checked_at = float("-inf")

    def current(self) -> LoadedPolicy | None:
        """The policy in force, or None when none is configured (built-in default).

        Raises:
            PolicyFileError: The configured file is invalid.
        """
        now = self._clock()
        if now - self._checked_at < config.policy_refresh_seconds():
            return self._cached
        with self._lock:
            self._cached = self._load(self._cached)
            self._checked_at = now
            return self._cached

    def invalidate(self) -> None:
        """Forget the cached policy so the next call reloads it (after ``policy apply``)."""
        with self._lock:
            self._checked_at = float("-inf")

    def _load(self, cached: LoadedPolicy | None) -> LoadedPolicy | None:
        path = config.policy_file()
        if path:
            stamp = (path, os.stat(path).st_mtime_ns)
            if cached is not None and cached.stamp == stamp:
                return cached
            from mlflow_governance.policy import load_policy

            return LoadedPolicy(load_policy(path), f"file:{path}", stamp)
        if self._read_database is None:
            return None
        newest = self._read_database()
        if newest is None:
            return None
        row_id, text = newest
        if cached is not None and cached.stamp == ("database", row_id):
            return cached
        from mlflow_governance.policy import load_policy_text

        policy = load_policy_text(text, source=f"applied policy #{row_id}")
        return LoadedPolicy(policy, f"database:{row_id}", ("database", row_id))

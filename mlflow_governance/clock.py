"""The one clock the plugin stamps its rows with.

The audit chain, request rows and applied policies all take their times from here. It
imports nothing of the plugin's, so every layer (audit, workflow, store) may use it.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """Naive UTC now, the form every supported database returns unchanged.

    The time columns are zone-less (MySQL's ``DATETIME`` has no zone), so an aware value
    would come back naive on some backends and no longer compare equal to what was
    written, which the audit chain's hashes depend on.
    """
    return datetime.now(timezone.utc).replace(tzinfo=None)

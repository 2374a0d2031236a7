"""One worker at a time through basic-auth's start-up (its migrations and admin user).

``mlflow server --app-name basic-auth`` bootstraps basic-auth's database once, in the
launcher, before it starts workers. For any other app name MLflow leaves that to the
app, so with ``--workers N`` every worker runs basic-auth's Alembic migrations at the
same moment; on PostgreSQL they collide (duplicate ``CREATE TABLE``), the losers crash and
uvicorn restarts them, which costs a minute and fills the log. The lock below queues
them instead: a file lock for the workers and servers of one machine, plus the database's
own advisory lock (PostgreSQL, MySQL) for servers on several machines. The first worker
migrates; the others find the schema current and go on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator

_logger = logging.getLogger(__name__)

#: How long a worker waits for another's bootstrap before giving up.
LOCK_TIMEOUT_SECONDS = 600


@contextlib.contextmanager
def bootstrap_lock(database_uri: str) -> Iterator[None]:
    """Hold an exclusive lock named after ``database_uri`` for the block.

    Args:
        database_uri: basic-auth's users database (the lock's name; never logged).
    """
    digest = hashlib.sha256(database_uri.encode("utf-8")).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"mlflow-governance-auth-{digest}.lock")
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            with _database_lock(database_uri, f"mlflow-governance-auth-{digest}"):
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _database_lock(database_uri: str, name: str) -> Iterator[None]:
    scheme = database_uri.split(":", 1)[0]
    if not scheme.startswith(("postgresql", "mysql")):
        yield
        return
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(database_uri, poolclass=sa.pool.NullPool)
        conn = engine.connect()
    except Exception as exc:  # basic-auth reports an unreachable database itself
        _logger.warning("No database lock for basic-auth's start-up: %s", type(exc).__name__)
        yield
        return
    try:
        if scheme.startswith("postgresql"):
            key = zlib.crc32(name.encode("utf-8"))
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        else:
            conn.execute(
                sa.text("SELECT GET_LOCK(:n, :t)"), {"n": name[:64], "t": LOCK_TIMEOUT_SECONDS}
            )
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name[:64]})
    finally:
        conn.close()
        engine.dispose()

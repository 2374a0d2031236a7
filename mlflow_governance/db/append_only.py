"""Database triggers that make ``governance_audit_log`` append-only.

The plugin only ever INSERTs audit rows. The triggers refuse every UPDATE, and every
DELETE except of rows that ``mlflow-governance audit retain`` has archived: those at or
below the newest boundary recorded in ``governance_audit_anchor``, which retention
writes in the transaction that deletes them. PostgreSQL also refuses TRUNCATE (which
fires no row triggers).

They stop mistakes and anyone who reaches the database through an ordinary account. A
database administrator can still drop or disable them: the hash chain and signed
checkpoints kept outside the database are what catch that (see docs/audit.md).

The SQL lives here, not only in migration ``0006``, so that a later migration which must
rebuild the table (SQLite's batch mode copies it, and the copy has no triggers) can
re-install them with :func:`install`.
"""

from __future__ import annotations

import sqlalchemy as sa

AUDIT_TABLE = "governance_audit_log"
ANCHOR_TABLE = "governance_audit_anchor"

#: Trigger names, the same on every backend (PostgreSQL also has a TRUNCATE trigger).
UPDATE_TRIGGER = "governance_audit_log_no_update"
DELETE_TRIGGER = "governance_audit_log_no_delete"
TRUNCATE_TRIGGER = "governance_audit_log_no_truncate"
#: PostgreSQL runs a function from its triggers.
PG_FUNCTION = "governance_audit_log_append_only"

#: How every refusal starts, on every backend.
REFUSAL = "governance_audit_log is append-only"

# MySQL caps a SIGNAL's MESSAGE_TEXT at 128 characters, and SQLite's RAISE takes a literal
# only: both messages stay short and fixed. PostgreSQL names the row.
_UPDATE_MESSAGE = f"{REFUSAL}: audit rows cannot be updated (see docs/audit.md)"
_DELETE_MESSAGE = f"{REFUSAL}: only rows archived by mlflow-governance audit retain may be deleted"
_BOUNDARY = f"(SELECT COALESCE(MAX(last_id), 0) FROM {ANCHOR_TABLE})"

_POSTGRES_INSTALL = (
    f"""
CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.id <= {_BOUNDARY} THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '{REFUSAL}: row % cannot be deleted', OLD.id
            USING HINT = 'Only rows archived by ''mlflow-governance audit retain'' may be '
                'deleted; see docs/audit.md.';
    ELSIF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION '{REFUSAL}: it cannot be truncated'
            USING HINT = 'Archive old rows with ''mlflow-governance audit retain''.';
    END IF;
    RAISE EXCEPTION '{REFUSAL}: row % cannot be updated', OLD.id
        USING HINT = 'Audit rows are never changed; see docs/audit.md.';
END
$body$
""",
    f"CREATE TRIGGER {UPDATE_TRIGGER} BEFORE UPDATE ON {AUDIT_TABLE} "
    f"FOR EACH ROW EXECUTE PROCEDURE {PG_FUNCTION}()",
    f"CREATE TRIGGER {DELETE_TRIGGER} BEFORE DELETE ON {AUDIT_TABLE} "
    f"FOR EACH ROW EXECUTE PROCEDURE {PG_FUNCTION}()",
    f"CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {AUDIT_TABLE} "
    f"FOR EACH STATEMENT EXECUTE PROCEDURE {PG_FUNCTION}()",
)
_POSTGRES_REMOVE = (
    f"DROP TRIGGER IF EXISTS {UPDATE_TRIGGER} ON {AUDIT_TABLE}",
    f"DROP TRIGGER IF EXISTS {DELETE_TRIGGER} ON {AUDIT_TABLE}",
    f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {AUDIT_TABLE}",
    f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()",
)

_MYSQL_INSTALL = (
    f"CREATE TRIGGER {UPDATE_TRIGGER} BEFORE UPDATE ON {AUDIT_TABLE} FOR EACH ROW "
    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_UPDATE_MESSAGE}'",
    f"CREATE TRIGGER {DELETE_TRIGGER} BEFORE DELETE ON {AUDIT_TABLE} FOR EACH ROW "
    f"BEGIN IF OLD.id > {_BOUNDARY} THEN "
    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_DELETE_MESSAGE}'; END IF; END",
)
_MYSQL_REMOVE = (
    f"DROP TRIGGER IF EXISTS {UPDATE_TRIGGER}",
    f"DROP TRIGGER IF EXISTS {DELETE_TRIGGER}",
)

_SQLITE_INSTALL = (
    f"CREATE TRIGGER {UPDATE_TRIGGER} BEFORE UPDATE ON {AUDIT_TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{_UPDATE_MESSAGE}'); END",
    f"CREATE TRIGGER {DELETE_TRIGGER} BEFORE DELETE ON {AUDIT_TABLE} "
    f"WHEN OLD.id > {_BOUNDARY} "
    f"BEGIN SELECT RAISE(ABORT, '{_DELETE_MESSAGE}'); END",
)
_SQLITE_REMOVE = _MYSQL_REMOVE

_INSTALL = {"postgresql": _POSTGRES_INSTALL, "mysql": _MYSQL_INSTALL, "sqlite": _SQLITE_INSTALL}
_REMOVE = {"postgresql": _POSTGRES_REMOVE, "mysql": _MYSQL_REMOVE, "sqlite": _SQLITE_REMOVE}


def _dialect(connection: sa.Connection) -> str:
    name = connection.dialect.name
    return "mysql" if name == "mariadb" else name


def install_statements(dialect: str) -> tuple[str, ...]:
    """The statements that create the triggers on one backend.

    Args:
        dialect: ``postgresql``, ``mysql`` (or ``mariadb``) or ``sqlite``.

    Returns:
        The statements, in order; none for a backend the plugin does not support.
    """
    return _INSTALL.get("mysql" if dialect == "mariadb" else dialect, ())


def remove_statements(dialect: str) -> tuple[str, ...]:
    """The statements that drop the triggers (and PostgreSQL's function), if present."""
    return _REMOVE.get("mysql" if dialect == "mariadb" else dialect, ())


def _run(connection: sa.Connection, statements: tuple[str, ...]) -> None:
    for statement in statements:
        # As text(): SQLAlchemy doubles the % of PostgreSQL's RAISE format for drivers
        # whose placeholders use it (psycopg, PyMySQL). The statements hold no ":name".
        connection.execute(sa.text(statement))


def install(connection: sa.Connection) -> None:
    """Create the triggers (replacing any of the same names).

    Args:
        connection: A connection in a transaction, e.g. a migration's.
    """
    _run(connection, remove_statements(_dialect(connection)))
    _run(connection, install_statements(_dialect(connection)))


def remove(connection: sa.Connection) -> None:
    """Drop the triggers (and PostgreSQL's function)."""
    _run(connection, remove_statements(_dialect(connection)))


def installed(connection: sa.Connection) -> list[str]:
    """The append-only triggers present on the audit table, by name, sorted.

    Args:
        connection: An open connection.
    """
    dialect = _dialect(connection)
    if dialect == "postgresql":
        # Disabled triggers (ALTER TABLE ... DISABLE TRIGGER) do not count.
        query = (
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relname = :table AND c.relnamespace = to_regnamespace(current_schema()) "
            "AND NOT t.tgisinternal AND t.tgenabled <> 'D'"
        )
    elif dialect == "mysql":
        query = (
            "SELECT trigger_name FROM information_schema.triggers "
            "WHERE event_object_table = :table AND trigger_schema = DATABASE()"
        )
    elif dialect == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"
    else:
        return []
    names = {
        str(name) for name in connection.execute(sa.text(query), {"table": AUDIT_TABLE}).scalars()
    }
    ours = {UPDATE_TRIGGER, DELETE_TRIGGER, TRUNCATE_TRIGGER}
    return sorted(names & ours)

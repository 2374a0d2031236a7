"""Fuzzing names: models, aliases and tags from hostile text, on every backend.

ana (``tests/workflow/policies/lab.yaml``) may register and edit models matching
``exp-*``, ``lab-?`` and ``ml-[ab]*`` and move aliases ``dev-*``. She sends writes whose
model names, aliases, tag keys and values are built from quotes, SQL fragments, LIKE
wildcards, NUL, right-to-left marks, emoji and 10,000-character runs, some inside what
she may touch and some outside.

Each write succeeds or is refused with one of MLflow's client errors (never
``INTERNAL_ERROR``, which the server answers with HTTP 500, nor a raw database
exception). After every one of them the registry and the audit log agree: every model,
version and alias has the ``allow`` row that made it, every ``allow`` row's model and
version exist, a refusal has its ``deny`` row, and the chain verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from mlflow.exceptions import MlflowException

from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.entry import build_store
from tests.fuzz.strategies import SURROGATE, fuzz_settings, hostile_text
from tests.workflow import acting, add_version, policy_path

BASE = "exp-base"
#: What a refused or invalid write may answer with: MLflow's 4xx error codes. (BAD_REQUEST
#: is MLflow's own answer when the database refuses a value, e.g. NUL on PostgreSQL.)
CLIENT_ERRORS = {
    "BAD_REQUEST",
    "INVALID_PARAMETER_VALUE",
    "PERMISSION_DENIED",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
}

_LONG = st.sampled_from(["n" * 10_000, "'" * 10_000, "%" * 10_000, "\U0001f525" * 10_000])
_TEXT = st.one_of(hostile_text, _LONG).filter(lambda text: not SURROGATE.search(text))
NAMES = st.one_of(
    st.builds(lambda prefix, text: prefix + text, st.sampled_from(["exp-", "ml-a", ""]), _TEXT),
    st.builds(lambda char: "lab-" + char, st.sampled_from(["%", "_", "'", "\x00", "\u202e"])),
)
ALIASES = st.builds(lambda text: "dev-" + text, _TEXT) | _TEXT
OPERATIONS = st.one_of(
    st.tuples(st.just("create_model"), NAMES),
    st.tuples(st.just("create_version"), NAMES),
    st.tuples(st.just("alias"), ALIASES),
    st.tuples(st.just("model_tag"), NAMES, _TEXT, _TEXT),
    st.tuples(st.just("version_tag"), _TEXT, _TEXT),
)


@pytest.fixture
def store(backend: str, db_url_for: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    governed = build_store("governed+" + db_url_for(backend))
    add_version(governed, BASE, creator="sre")
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", policy_path("lab"))
    yield governed
    governed.engine.dispose()


def _write(store: Any, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "create_model":
        store.create_registered_model(op[1])
    elif kind == "create_version":
        store.create_model_version(op[1], "file:///models/fuzz")
    elif kind == "alias":
        store.set_registered_model_alias(BASE, op[1], "1")
    elif kind == "model_tag":
        store.set_registered_model_tag(op[1], RegisteredModelTag(op[2], op[3]))
    else:
        store.set_model_version_tag(BASE, "1", ModelVersionTag(op[1], op[2]))


def _denials(conn: sa.Connection) -> int:
    query = sa.select(sa.func.count()).where(audit_log.c.decision == "deny")
    return int(conn.execute(query).scalar_one())


def _assert_registry_and_log_agree(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(
            audit_log.c.action, audit_log.c.model, audit_log.c.version, audit_log.c.alias
        ).where(audit_log.c.decision == "allow")
    ).all()
    created = {r.model for r in rows if r.action == "create_registered_model"}
    versions = {(r.model, int(r.version)) for r in rows if r.action == "create_model_version"}
    aliased = {(r.model, r.alias) for r in rows if r.action == "set_registered_model_alias"}
    models = set(conn.execute(sa.text("SELECT name FROM registered_models")).scalars())
    stored = {
        (name, int(version))
        for name, version in conn.execute(sa.text("SELECT name, version FROM model_versions"))
    }
    aliases = set(
        conn.execute(sa.text("SELECT name, alias FROM registered_model_aliases")).tuples()
    )
    assert models == created, models ^ created
    assert stored == versions, stored ^ versions
    assert aliases <= aliased, aliases - aliased
    assert verify(conn).ok


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"], indirect=True)
@fuzz_settings(max_examples=40)
@given(op=OPERATIONS)
def test_a_hostile_name_is_written_or_refused_and_the_log_agrees(
    store: Any, op: tuple[Any, ...]
) -> None:
    with store.engine.connect() as conn:
        denied_before = _denials(conn)
    with acting("ana"):
        try:
            _write(store, op)
        except MlflowException as error:
            code = str(error.error_code)
            assert code in CLIENT_ERRORS, (op[0], code, error.message[:300])
        else:
            code = None
    with store.engine.connect() as conn:
        if code == "PERMISSION_DENIED":
            assert _denials(conn) == denied_before + 1, op[0]
        _assert_registry_and_log_agree(conn)


# Found by the generator above: on PostgreSQL a model name longer than the column reached
# the database, and MLflow answered BAD_REQUEST with the driver's message, SQL included.
# The governed store now checks the lengths MLflow leaves unchecked (names, descriptions,
# model tag values, sources) once the policy has decided and before MLflow's session
# opens, on the databases that enforce them (SQLite keeps longer text, as in MLflow).
# It is an input error, not a policy refusal: no audit row, as for MLflow's own
# validation; a caller the policy refuses is still refused, and audited, first.
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_a_name_longer_than_the_column_is_refused_without_sql(store: Any) -> None:
    long_name = "exp-" + "n" * 253
    with store.engine.connect() as conn:
        rows_before = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()
    attempts = {
        "create": lambda: store.create_registered_model(long_name),
        "rename": lambda: store.rename_registered_model(BASE, long_name),
        "copy": lambda: store.copy_model_version(store.get_model_version(BASE, "1"), long_name),
        "tag value": lambda: store.set_registered_model_tag(
            BASE, RegisteredModelTag("k", "v" * 5001)
        ),
        "description": lambda: store.update_registered_model(BASE, "d" * 5001),
        "source": lambda: store.create_model_version(BASE, "file:///" + "s" * 500),
    }
    for what, attempt in attempts.items():
        with acting("sre"), pytest.raises(MlflowException) as caught:
            attempt()
        assert caught.value.error_code == "INVALID_PARAMETER_VALUE", (what, caught.value)
        assert "VARCHAR" not in caught.value.message.upper(), what
        assert "at most" in caught.value.message and "characters long" in caught.value.message
    with store.engine.connect() as conn:
        rows_after = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()
        assert rows_after == rows_before  # input errors leave no audit row
        models = set(conn.execute(sa.text("SELECT name FROM registered_models")).scalars())
    assert models == {BASE}
    # At the limit, the name is taken.
    with acting("sre"):
        store.create_registered_model("exp-" + "n" * 252)
    # ana may not register outside her globs: refused by the policy, and audited, first.
    with store.engine.connect() as conn:
        denied = _denials(conn)
    with acting("ana"), pytest.raises(MlflowException) as caught:
        store.create_registered_model("zz-" + "n" * 300)
    assert caught.value.error_code == "PERMISSION_DENIED"
    with store.engine.connect() as conn:
        assert _denials(conn) == denied + 1
        assert verify(conn).ok

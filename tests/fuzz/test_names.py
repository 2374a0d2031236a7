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
#: is MLflow's own answer to a name longer than PostgreSQL's VARCHAR(256): a 400, but
#: with the database's message; see the strict xfail at the end.)
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


# Found by the generator above: on PostgreSQL a model name longer than the column reaches
# the database, and MLflow answers BAD_REQUEST with the driver's message, SQL included.
# The governed store would check the length before its session opens; until it does,
# this is pinned: strict, so the fix makes it pass and the marker must then go.
@pytest.mark.xfail(strict=True, reason="a 257-character name is refused by the database")
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_name_longer_than_the_column_is_refused_without_sql(store: Any) -> None:
    with acting("ana"), pytest.raises(MlflowException) as caught:
        store.create_registered_model("exp-" + "n" * 253)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "VARCHAR" not in caught.value.message.upper()

"""Fixtures of the audit tests: a short audit trail and the attacker's own connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.entities.model_registry import ModelVersionTag

#: Rows written by :func:`logged`.
ROWS = 6


@pytest.fixture
def logged(store: Any, as_user: Callable[[str], None]) -> int:
    """Six audit rows on the parametrised backend."""
    as_user("alice")
    store.create_registered_model("fraud")
    store.create_model_version("fraud", "s3://models/fraud/1")
    store.create_model_version("fraud", "s3://models/fraud/2")
    as_user("bob")
    store.transition_model_version_stage("fraud", 1, "Staging", False)
    store.set_registered_model_alias("fraud", "champion", 1)
    store.set_model_version_tag("fraud", 2, ModelVersionTag("validation_status", "passed"))
    return ROWS


@pytest.fixture
def sql(db_url: str) -> Iterator[sa.Engine]:
    """The attacker's own connection to the registry database."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()

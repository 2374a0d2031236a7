"""Read filtering, in SQL, on SQLite, PostgreSQL and MariaDB.

ana (lab.yaml) may read models matching ``exp-*``, ``lab-?`` and ``ml-[ab]*`` (globs are
case-sensitive); rob reads everything. Twelve models with interleaved names, seven of
them readable by ana: her searches page through exactly those seven, two at a time, with
full pages and working page tokens, and naming any other one is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from tests.workflow import assert_refused
from tests.workflow.conftest import Registry, make_registry

READABLE = ["exp-1", "exp-2", "exp-zz", "lab-a", "lab-b", "ml-a1", "ml-b2"]
# Each fails one glob: case (EXP-3, ML-b3), ? is one character (lab-xy, lab-ab), [ab] (ml-c1).
# (No name differs from another by case alone: MySQL's default collation merges them.)
UNREADABLE = ["EXP-3", "lab-xy", "lab-ab", "ml-c1", "ML-b3"]


@pytest.fixture
def lab(registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    reg = make_registry(registry_uri, monkeypatch, None)
    for name in sorted(READABLE + UNREADABLE):
        reg.seed(name, creator="sre", aliases=["dev-1"])
    reg.use_policy("lab")
    yield reg
    reg.store.engine.dispose()


def _pages(search: Callable[..., Any]) -> list[list[str]]:
    pages, token = [], None
    while True:
        page = search(max_results=2, page_token=token)
        pages.append([item.name for item in page])
        token = page.token
        if not token:
            return pages
        assert len(pages) < 20, "page tokens do not advance"


def test_unreadable_models_are_refused(lab: Registry) -> None:
    lab.as_user("ana")
    assert lab.mlflow.get_registered_model("lab-a").name == "lab-a"
    assert int(lab.mlflow.get_model_version("ml-b2", 1).version) == 1
    calls: list[Callable[[], Any]] = [
        lambda: lab.mlflow.get_registered_model("ml-c1"),
        lambda: lab.mlflow.get_model_version("ml-c1", 1),
        lambda: lab.mlflow.get_model_version_by_alias("EXP-3", "dev-1"),
        lambda: lab.mlflow.get_model_version_download_uri("lab-ab", 1),
    ]
    for call in calls:
        with pytest.raises(MlflowException) as info:
            call()
        assert_refused(
            info.value, actor="ana", action="read", rule="default-deny", allow="Ask for role"
        )
        assert "bindings[0] grants it only on models exp-*, lab-?, ml-[ab]*" in info.value.message


def test_searches_page_through_readable_models_only(lab: Registry) -> None:
    lab.as_user("ana")
    models = _pages(lambda **kw: lab.mlflow.search_registered_models(order_by=["name ASC"], **kw))
    assert [len(page) for page in models] == [2, 2, 2, 1]
    assert [name for page in models for name in page] == READABLE
    versions = _pages(lambda **kw: lab.mlflow.search_model_versions(order_by=["name ASC"], **kw))
    assert [len(page) for page in versions] == [2, 2, 2, 1]
    assert [name for page in versions for name in page] == READABLE
    filtered = lab.mlflow.search_registered_models("name LIKE 'ml-%'", max_results=10)
    assert [m.name for m in filtered] == ["ml-a1", "ml-b2"]
    # rob reads every model: the same searches return all twelve.
    lab.as_user("rob")
    everything = _pages(lab.mlflow.search_registered_models)
    assert sorted(name for page in everything for name in page) == sorted(READABLE + UNREADABLE)
    assert all(len(page) == 2 for page in everything[:-1])
